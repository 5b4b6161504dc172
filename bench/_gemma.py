"""A Gemma-2-like causal LM of any width for the bench scripts: the real 256k vocabulary, tied embeddings
and final-logit soft-capping 30 (Gemma-2 defaults), at a width that fits the CPU."""

from __future__ import annotations

import torch


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
