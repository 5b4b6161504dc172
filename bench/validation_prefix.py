"""One point of the SAE training curve (the spliced validation CE) with the clean prefix reused
(`lorasae/model/prefix.py`: layers 0…L cached once, each point runs layers L+1… and the head) vs the full
spliced forward, interleaved in one process, on the built-in model's shape (Llama, 4 layers, d 128,
vocab 4096, tied head, ctx 128; random weights: the timing does not depend on them), TopK SAE ×8 k 4 at
layer 1, 8,192 validation tokens in batches of 8 sequences (train_sae.py's defaults for that model).

    python bench/validation_prefix.py
    python bench/validation_prefix.py --model saved_models/tiny      (the built model itself)
    python bench/validation_prefix.py --layer 0 --val_tokens 3072
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import alternate, machine, sync  # noqa: E402

from lorasae.core.cli import parse  # noqa: E402


@dataclass
class ValidationPrefixBench:
    model: str | None = None
    """A model folder or name to load; default: a random Llama of the built-in model's shape."""
    layer: int = 1
    """The SAE's layer (the residual after it is cached)."""
    val_tokens: int = 8192
    """Validation tokens of one curve point."""
    ctx_len: int = 128
    """Tokens per validation chunk."""
    val_batch_size: int = 8
    """Chunks per forward pass."""
    curve_points: int = 101
    """Curve points of a run, for the whole-curve estimate (the paper: 101, one every hundredth of training)."""
    repeats: int = 7
    """Interleaved timed repetitions of each variant (median reported)."""
    threads: int = 1
    """torch threads."""
    device: str = "cpu"
    """cpu or cuda."""


def _model(cfg: ValidationPrefixBench, device: torch.device):
    if cfg.model:
        from lorasae.model.load import load_model

        return load_model(cfg.model, device, "float32")[0]
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=4096, hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, head_dim=32, max_position_embeddings=cfg.ctx_len, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    return LlamaForCausalLM(config).to(device).eval()


def main(cfg: ValidationPrefixBench) -> None:
    from lorasae.model.ce import ce_sum_and_count
    from lorasae.model.load import d_model, num_layers
    from lorasae.model.prefix import build_prefix_cache
    from lorasae.sae import SaeConfig, TopKSAE
    from lorasae.sae.splice import splice_fn

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    device = torch.device(cfg.device)
    model = _model(cfg, device).requires_grad_(False)
    d, n = d_model(model), num_layers(model)
    sae = TopKSAE(SaeConfig.from_expansion(d, 8, 4, hook_layer=cfg.layer)).to(device).requires_grad_(False)
    vocab = model.config.vocab_size
    chunks = torch.randint(3, vocab, (-(-cfg.val_tokens // cfg.ctx_len), cfg.ctx_len), device=device)
    chunks[:, 0] = 1

    def fns(ids):
        return {cfg.layer: splice_fn(sae, ids, [1, 2])}

    # CPU time of this process on the CPU (steadier on a shared machine); wall time on a GPU
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    start = clock()
    cache, note = build_prefix_cache(model, chunks, cfg.layer, cfg.val_batch_size)
    sync(device)
    build_s = clock() - start
    assert cache is not None, note
    full_ce = ce_sum_and_count(model, chunks, cfg.val_batch_size, fns)
    reused_ce = cache.ce_sum_and_count(cfg.val_batch_size, fns)
    diff = abs(full_ce[0] / full_ce[1] - reused_ce[0] / reused_ce[1])
    seconds = alternate(
        {
            "full spliced forward (before)": lambda: ce_sum_and_count(model, chunks, cfg.val_batch_size, fns),
            f"prefix reused (layers {cfg.layer + 1}+ only)": lambda: cache.ce_sum_and_count(
                cfg.val_batch_size, fns
            ),
        },
        device,
        repeats=cfg.repeats,
        clock=clock,
    )
    full, reused = seconds.values()
    points = cfg.curve_points
    rows = [[name, f"{1000 * s:.0f}", f"{points * s:.1f}"] for name, s in seconds.items()]
    rows.append(["building the cache (once)", f"{1000 * build_s:.0f}", ""])
    print(
        f"{machine()}; {n} layers, d {d}, vocab {vocab}, SAE at layer {cfg.layer}, {chunks.numel():,} tokens"
    )
    print(note)
    print(
        tabulate(
            rows,
            headers=[
                "one curve point",
                "CPU ms (median)" if device.type == "cpu" else "ms (median)",
                f"× {points} points, s",
            ],
        )
    )
    print(f"|CE difference| {diff:.2e} nats/token")
    whole = (points * full) / (build_s + points * reused)
    print(
        f"validation_prefix: {full / reused:.2f}x per curve point, {whole:.2f}x over {points} points "
        f"with the cache build (ideal for the layers alone: {n}/{n - cfg.layer - 1} of them)"
    )


if __name__ == "__main__":
    main(parse(ValidationPrefixBench))
