"""Full-vocabulary KL(p_base ‖ p_student) in chunks of positions, shared by the LoRA trainer and the e2e
SAE objective: `head.py` (the LM head over the final hidden states), `chunked.py` (`chunked_kl`, the
reference `naive_kl`), `lean.py` (the per-chunk kernel from hidden states)."""

from lorasae.kl.chunked import DEFAULT_CHUNK_BYTES, KL_IMPLS, auto_chunk_size, chunked_kl, naive_kl
from lorasae.kl.head import LogitHead, body_module, final_hidden, verified_head, verify_head
from lorasae.kl.lean import lean_chunk_kl

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "KL_IMPLS",
    "LogitHead",
    "auto_chunk_size",
    "body_module",
    "chunked_kl",
    "final_hidden",
    "lean_chunk_kl",
    "naive_kl",
    "verified_head",
    "verify_head",
]
