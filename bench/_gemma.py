"""A Gemma-2-like causal LM of any width for the bench scripts: the real 256k vocabulary, tied embeddings
and final-logit soft-capping 30 (Gemma-2 defaults), at a width that fits the CPU."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GemmaStepBench:
    """The flags shared by the scripts that time two training steps on a `gemma2_like` model."""

    device: str = "cpu"
    """cpu, a GPU index or cuda:N."""
    dtype: str = "float32"
    """Model dtype: float32 or bfloat16."""
    vocab_size: int = 256_000
    """Vocabulary size (Gemma-2: 256,000)."""
    d_model: int = 256
    """Hidden width (Gemma-2-2B: 2304)."""
    layers: int = 4
    """Decoder layers (Gemma-2-2B: 26)."""
    sae_layer: int = 1
    """Layer whose output the SAE replaces."""
    expansion: int = 8
    """SAE width / d_model."""
    k: int = 32
    """SAE active latents."""
    batch_size: int = 1
    """Sequences per step (paper: 1)."""
    ctx_len: int = 1024
    """Tokens per sequence (paper: 1024)."""
    repeats: int = 5
    """Timed steps per variant (median; the variants alternate)."""
    warmup: int = 1
    """Untimed steps per variant first."""
    threads: int | None = None
    """torch CPU threads (default: torch's default)."""
    clock: str = "wall"
    """wall (throughput) or cpu (process CPU time, summed over threads; steadier on a shared machine)."""
    memory: bool = True
    """Measure peak memory (one fresh subprocess per variant)."""
    seed: int = 0
    """Seed for the weights and the batch."""
    worker: str = ""
    """Internal: measure the peak memory of one variant and print it as JSON."""


def gemma2_like(vocab_size: int, d_model: int, layers: int, ctx_len: int) -> torch.nn.Module:
    """A randomly initialised Gemma2ForCausalLM with `d_model // 64` heads of 64 (at least one)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    heads = max(1, d_model // 64)
    config = Gemma2Config(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=4 * d_model,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        head_dim=d_model // heads,
        query_pre_attn_scalar=d_model // heads,
        max_position_embeddings=max(8192, ctx_len),
        attn_implementation="eager",
    )  # Gemma-2 defaults otherwise: tied embeddings, final logit soft-capping 30
    return Gemma2ForCausalLM(config)
