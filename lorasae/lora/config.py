"""`train_lora.py`'s flags (SPEC §3.2). Every flag of the original is here with the paper's setting as its
default; field docstrings are the `--help` text.

Defaults that depend on the model are filled in by `TrainLoraConfig.resolved(d_model, n_layers,
max_positions)`, with the same rules as `train_sae.py` so that both scripts share one validation/train split:
- `ctx_len`: 1024 (the paper's), capped at the model's context window (the built-in tiny model: 128).
- `num_val_tokens`: 1M (the paper's) for models with d_model ≥ 1024, fewer for small ones (train_sae.py's
  `default_num_val_tokens`); `val_batch_size` likewise follows train_sae.py.
- `batch_size`: 1 sequence per step (the paper's), also for the tiny model: a short run then has as many
  optimiser steps as sequences.
- `lr`: 5e-5 (the paper's) for models with d_model ≥ 1024; 5e-4 for small models (the built-in tiny one,
  d=128). Measured on the built-in tiny model (TopK SAE k=4, 8x, layer 1, 300k tokens: CE 1.476 → 2.031;
  rank 16, all layers, 300 sequences of 128 tokens), fraction of the CE gap closed by lr: 5e-5: 19.8 %,
  2e-4: 35.7 %, 5e-4: 43.0 %, 1e-3: 45.9 %, 2e-3: 32.2 %; on a less trained tiny world 3e-3 diverged
  (adapters before a TopK SAE flip its latent choices). 5e-4 keeps a margin below that region.
- `eval_every`: 1000 sequences (the paper's) for runs of ≥ 10,000 sequences; shorter runs validate every
  ⌈N/10⌉ sequences so their curves still have 11 points.
- `sae_layer`: 12 (the paper's) for models with more than 12 layers; the built-in tiny model: 1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from lorasae.core.cli import CommonArgs, SaeArchitectureArgs, field, parse_count
from lorasae.kl import KL_IMPLS
from lorasae.lora.adapters import LORA_ALPHA, LORA_DROPOUT
from lorasae.model.data import default_dataset
from lorasae.model.defaults import (
    default_ctx_len,
    default_num_val_tokens,
    default_sae_layer,
    default_val_batch_size,
    is_small,
)
from lorasae.model.load import model_key

PAPER_LR = 5e-5
SMALL_MODEL_LR = 5e-4
PAPER_EVAL_EVERY = 1000


def default_lr(d_model: int) -> float:
    """5e-5 (the paper's) for d_model ≥ 1024; 5e-4 for small models (the built-in tiny one)."""
    return SMALL_MODEL_LR if is_small(d_model) else PAPER_LR


def default_eval_every(num_train_examples: int) -> int:
    """1000 sequences (the paper's), or ⌈N/10⌉ for shorter runs (≥ 11 curve points)."""
    return max(1, min(PAPER_EVAL_EVERY, math.ceil(num_train_examples / 10)))


@dataclass
class LoraHyperparams:
    """How each LoRA run trains and validates: shared, field for field, by train_lora.py and sweep.py
    (the sweep passes them on to every run it trains)."""

    num_train_examples: int = field(default=15_000, type=parse_count)
    """Training sequences (the paper: 15000, 30000 or 100000); any positive count, e.g. 300 or 15k."""

    save_model: bool = False
    """Save the adapter (PEFT format) under saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>/
    (`rank_<r>__<settings>/` when settings differ from the defaults, e.g. `rank_16__n-300`)."""

    ctx_len: int | None = None
    """Tokens per sequence. Default: 1024 (the paper's), capped at the model's context window."""

    batch_size: int = 1
    """Sequences per optimiser step, all ranks together (the paper: one 1024-token sequence)."""

    lr: float | None = None
    """AdamW learning rate, constant. Default: 5e-5 (the paper's); 5e-4 for small models (d_model < 1024)."""

    weight_decay: float = 0.01
    """AdamW weight decay."""

    max_grad_norm: float = 1.0
    """Gradient-norm clipping threshold."""

    lora_alpha: float = LORA_ALPHA
    """LoRA alpha (scaling = alpha / rank)."""

    lora_dropout: float = LORA_DROPOUT
    """Dropout on the LoRA input."""

    num_val_tokens: int | None = field(default=None, type=parse_count)
    """Validation tokens (the first chunks of the data, shared with train_sae.py). Default: 1M; fewer for
    small models (d_model < 1024), as train_sae.py."""

    eval_every: int | None = field(default=None, type=parse_count)
    """Validate (spliced CE) every this many sequences. Default: 1000; ⌈N/10⌉ for runs shorter than 10k."""

    val_batch_size: int | None = None
    """Sequences per forward pass during validation. Default: 4096 tokens' worth (1024 for small models),
    as train_sae.py."""

    kl_impl: str = "fused"
    """KL implementation: fused (LM head applied per chunk of positions, no [B,T,V] tensor), chunked (full
    logits, KL per chunk) or naive (the original's full-tensor formula)."""

    kl_chunk_size: int = 0
    """Positions per KL chunk (0 = about 128 MiB of fp32 logits per chunk)."""

    text_field: str = "text"
    """Field holding the text in jsonl/parquet datasets."""

    progress: bool = True
    """Show a tqdm progress bar."""

    overwrite: bool = False
    """Redo a run that is done with identical inputs (default: skip it, saying so), and replace outputs
    that another run left under the same name (e.g. from an SAE retrained since; default: refuse)."""


@dataclass
class TrainLoraConfig(LoraHyperparams, SaeArchitectureArgs, CommonArgs):
    """Train LoRA adapters on a frozen model so that, with frozen SAEs spliced in, it matches the
    original model's next-token distribution (KL objective)."""

    sae_layer: str | None = None
    """Decoder layer(s) whose output the SAE replaces: 12, or several SAEs trained jointly: 1,2 / 1-3.

    Default: 12 (the paper's); the built-in tiny model: 1. With --sae and no --sae_layer, the SAE's own
    hook layer."""

    LoRA_layers: str = field(default="all", alias=["--lora_layers"])
    """Layers that get adapters: all, after (the layers after the SAE), or a list/range such as 3-5 or 1,4."""

    rank: int = 64
    """LoRA rank."""

    checkpoint_percent: int | None = None
    """Adapt this checkpoint (percent of SAE training) of our SAE. Default: every checkpoint that exists
    (10, 20, …, 100 percent), one run each; the final SAE when there are no checkpoints."""

    sae: list[str] = field(default_factory=list, action="append")
    """SAE source, instead of our own saved_saes/ checkpoints: a folder (ours, SAELens or sparsify format)
    or a sae-lens release 'release/sae_id' (e.g. gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82).
    Repeat (--sae A --sae B) for several SAEs trained jointly, paired in order with --sae_layer."""

    sae_kind: str = "normal"
    """Which of our SAEs: normal (reconstruction-trained, of --architecture) or e2e."""

    expansion_factor: int | None = field(default=None, alias=["--sae_expansion_factor"])
    """Which of our SAEs, when saved_saes/<model>/<kind>/ holds several families (expansion_<E>_L0_<k>):
    --sae_expansion_factor (--expansion_factor is train_sae.py's setting; kept here as an alias)."""

    k: int | None = field(default=None, alias=["--sae_k"])
    """Which of our SAEs (its L0 = k), when several families exist: --sae_k (-k/--k is train_sae.py's
    setting; kept here as an alias)."""

    skip_existing: bool = True
    """Skip a run that is done with identical inputs (its run record matches; the original skipped when the
    CE_increase JSON existed, and the names now differ whenever the settings do). `--skip_existing false`
    redoes it, as --overwrite does."""

    # --- filled in by `resolved()` ---------------------------------------------------------------------
    def resolved(self, d_model: int, n_layers: int, max_positions: int | None = None) -> TrainLoraConfig:
        """A copy with every model-dependent default filled in, validated."""
        cfg = dataclasses.replace(self, sae=[s for group in self.sae for s in _flatten(group)])
        cfg.dataset = cfg.dataset or default_dataset(cfg.model_name)
        cfg.ctx_len = cfg.ctx_len if cfg.ctx_len is not None else default_ctx_len(max_positions)
        if cfg.num_val_tokens is None:
            cfg.num_val_tokens = default_num_val_tokens(d_model)
        if cfg.val_batch_size is None:
            cfg.val_batch_size = default_val_batch_size(d_model, cfg.ctx_len)
        cfg.lr = cfg.lr if cfg.lr is not None else default_lr(d_model)
        if cfg.eval_every is None:
            cfg.eval_every = default_eval_every(cfg.num_train_examples)
        if cfg.sae_layer is None and not cfg.sae:
            cfg.sae_layer = str(default_sae_layer(n_layers))
        cfg.validate(max_positions)
        return cfg

    def validate(self, max_positions: int | None = None) -> None:
        problems = []
        if self.rank < 1:
            problems.append(f"--rank must be ≥ 1, got {self.rank}")
        if self.batch_size < 1:
            problems.append(f"--batch_size must be ≥ 1, got {self.batch_size}")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            problems.append(f"--val_batch_size must be ≥ 1, got {self.val_batch_size}")
        if self.ctx_len is not None and self.ctx_len < 2:
            problems.append(f"--ctx_len must be ≥ 2, got {self.ctx_len}")
        if self.ctx_len is not None and max_positions and self.ctx_len > max_positions:
            problems.append(f"--ctx_len {self.ctx_len} exceeds the model's context window of {max_positions}")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"--lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            problems.append(f"--weight_decay must be ≥ 0, got {self.weight_decay}")
        if self.max_grad_norm <= 0:
            problems.append(f"--max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.checkpoint_percent is not None and not 1 <= self.checkpoint_percent <= 100:
            problems.append(f"--checkpoint_percent must be between 1 and 100, got {self.checkpoint_percent}")
        if self.sae and self.checkpoint_percent is not None:
            problems.append(
                "--checkpoint_percent selects one of our SAE checkpoints; it cannot go with --sae"
            )
        if self.sae_kind not in ("normal", "e2e"):
            problems.append(f"--sae_kind must be normal or e2e, got {self.sae_kind!r}")
        if self.kl_impl not in KL_IMPLS:
            problems.append(f"--kl_impl must be one of {', '.join(KL_IMPLS)}, got {self.kl_impl!r}")
        if self.kl_chunk_size < 0:
            problems.append(f"--kl_chunk_size must be ≥ 0, got {self.kl_chunk_size}")
        if self.eval_every is not None and self.eval_every < 1:
            problems.append(f"--eval_every must be ≥ 1, got {self.eval_every}")
        if problems:
            raise ValueError("Invalid train_lora settings:\n  " + "\n  ".join(problems))

    @property
    def model_key(self) -> str:
        """Short model name used in output paths (`tiny`, `gemma`, `llama`, ...)."""
        return model_key(self.model_name)


def _flatten(group: str | list[str]) -> list[str]:
    return [group] if isinstance(group, str) else [s for item in group for s in _flatten(item)]
