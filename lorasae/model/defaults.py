"""The settings that depend on the model, defined once: what `train_sae.py` uses when not told (SAE layer,
k, expansion factor, context, validation tokens) is what every other script assumes when not told, so the
SAE a default `train_sae.py` run wrote is the SAE every other script picks with no flags, and both
trainers share one validation/train split.

- SAE layer: 12 (the paper's) for models with more than 12 layers; otherwise 1 (the built-in tiny model,
  4 layers), at most the last layer.
- k: 64 (the paper's) for d_model ≥ 1024; smaller models keep the paper's sparsity ratio k/d = 64/2304
  ≈ 2.8 %, i.e. round(64·d/2304) (tiny, d=128: 4).
- expansion factor: 8 (the paper's).
- context: 1024 tokens, capped at the model's context window; validation: 1M tokens for d_model ≥ 1024,
  8,192 for small models; validation batches of 4096 tokens (1024 for small models).
- training tokens: 2B (the paper's SAE budget on Gemma-2-2B) for an SAE on a model with d_model ≥ 1024,
  200,000 (`lorasae.core.budget.DEMO_SAE_TOKENS`, the demo's) for small models; for a KL fine-tune of one
  (`--objective kl`), Karvonen's 25M (arXiv 2503.17272: "the final 25M training tokens") for d_model ≥
  1024, 32,768 for small models (the built-in ones: 32 steps, seconds on a CPU).
"""

from __future__ import annotations

from lorasae.core.budget import DEMO_SAE_TOKENS
from lorasae.model.load import ModelShape

PAPER_K = 64
PAPER_D_MODEL = 2304  # Gemma-2-2B, where the paper's k = 64 was chosen
PAPER_EXPANSION = 8
PAPER_SAE_LAYER = 12
SMALL_MODEL_SAE_LAYER = 1
SMALL_MODEL_D = 1024  # below this residual width the "small model" defaults apply
PAPER_VAL_TOKENS = 1_000_000
SMALL_MODEL_VAL_TOKENS = 8_192
PAPER_CTX_LEN = 1024
VAL_BATCH_TOKENS = 4096  # tokens per validation forward pass (Gemma-2-2B's fp32 logits: 4 GiB)
SMALL_MODEL_VAL_BATCH_TOKENS = 1024  # small models run on CPUs, where small batches are faster
PAPER_SAE_TOKENS = 2_000_000_000  # the paper's Gemma-2-2B SAEs (4B for Llama: pass --num_train_tokens)
KL_FINE_TUNE_TOKENS = 25_000_000  # Karvonen, arXiv 2503.17272: the KL+MSE fine-tune's budget
SMALL_MODEL_KL_FINE_TUNE_TOKENS = 32_768  # the built-in models: 32 steps of 1024 tokens


def is_small(d_model: int) -> bool:
    return d_model < SMALL_MODEL_D


def default_k(d_model: int) -> int:
    """64 for d_model ≥ 1024, else the paper's sparsity ratio kept: round(64·d/2304), at least 1."""
    return PAPER_K if not is_small(d_model) else max(1, round(PAPER_K * d_model / PAPER_D_MODEL))


def default_sae_layer(n_layers: int) -> int:
    """12 (the paper's) when the model has more than 12 layers, else 1 (at most the last layer)."""
    return PAPER_SAE_LAYER if n_layers > PAPER_SAE_LAYER else max(0, min(SMALL_MODEL_SAE_LAYER, n_layers - 1))


def default_num_val_tokens(d_model: int) -> int:
    """1M validation tokens (the paper's) for d_model ≥ 1024, 8,192 for small models."""
    return PAPER_VAL_TOKENS if not is_small(d_model) else SMALL_MODEL_VAL_TOKENS


def default_num_train_tokens(d_model: int, objective: str = "reconstruction") -> int:
    """Training tokens of train_sae.py: for an SAE 2B (the paper's) for d_model ≥ 1024, the demo's 200,000
    (`DEMO_SAE_TOKENS`) for small models (the built-in ones: every script and README command trains them
    so, and their SAEs keep the plain folder names); for a KL fine-tune (`objective == "kl"`) 25M
    (Karvonen's) for d_model ≥ 1024, 32,768 for small models."""
    if objective != "kl":
        return PAPER_SAE_TOKENS if not is_small(d_model) else DEMO_SAE_TOKENS
    return KL_FINE_TUNE_TOKENS if not is_small(d_model) else SMALL_MODEL_KL_FINE_TUNE_TOKENS


def default_ctx_len(max_positions: int | None) -> int:
    """1024, capped at the model's context window."""
    return min(PAPER_CTX_LEN, max_positions) if max_positions else PAPER_CTX_LEN


def default_val_batch_size(d_model: int, ctx_len: int) -> int:
    """Sequences per validation forward: 4096 tokens' worth, 1024 for small models."""
    tokens = VAL_BATCH_TOKENS if not is_small(d_model) else SMALL_MODEL_VAL_BATCH_TOKENS
    return max(1, tokens // ctx_len)


def sae_defaults(shape: ModelShape) -> tuple[int, int, int]:
    """(layer, expansion factor, k) of a `train_sae.py` run with default flags on a model of this shape."""
    return default_sae_layer(shape.n_layers), PAPER_EXPANSION, default_k(shape.d_model)
