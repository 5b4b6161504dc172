"""`train_sae.py`'s flags (SPEC §3.1): the paper's settings are the defaults. Field docstrings are `--help`.

Some defaults depend on the model and are filled in by `TrainSaeConfig.resolved(d_model, max_positions,
n_layers)`, with the rules of `lorasae/model/defaults.py` (shared by every script):
- `layer`: 12 (the paper's) for models with more than 12 layers; 1 for smaller ones (the built-in tiny one).
- `k`: 64 (the paper's) for models with d_model ≥ 1024; smaller models (the built-in tiny one, d=128)
  keep the paper's sparsity ratio k/d = 64/2304 ≈ 2.8 %, i.e. k = round(64·d/2304) (tiny: 4).
- `ctx_len`: 1024 (the paper's), capped at the model's `max_position_embeddings`.
- `batch_size`: the paper's 1024 tokens per step: 1 sequence of 1024 tokens; 8 of the tiny model's 128.
- `num_train_tokens`: 2B (the paper's) for d_model ≥ 1024, the demo's 200,000 for smaller models (the
  built-in ones); with `--objective kl`, Karvonen's 25M for d_model ≥ 1024 and 32,768 for smaller models.

A setting that changes the SAE's weights (budget, lr, seed, batch, context, data, ...) and differs from
these defaults is named in the SAE's folder, `expansion_<E>_L0_<k>__<variant>` (`lorasae/train/sae_names.py`);
settings that change only what is measured (curve points, checkpoints, validation of the statistics) are not.
- `num_val_tokens`: 1,000,000 (the paper's) for models with d_model ≥ 1024; 8,192 (64 sequences of 128)
  for smaller ones. Short runs take their 101 curve points on fewer (`--curve_val_tokens`), each reusing
  the clean prefix (`lorasae/model/prefix.py`); differences between SAEs and checkpoints are paired (same
  tokens), so 8k tokens resolve them to a few thousandths of a nat.
- `lr`: 2e-4 / sqrt(m / 2^14) with m the SAE width (Gao et al.'s scaling law, the paper's choice).
- warm-up: `lr_warmup_steps` (1000), but never more than 10 % of the run (a 300-step run would otherwise
  never leave the warm-up); the paper's 2B-token runs are unaffected.
- `dead_after_tokens`: 10M (sparsify's), but at most 10 % of the training tokens.
"""

# no `from __future__ import annotations`: simple-parsing resolves the string annotations of the option
# groups' nested dataclass field (`sae_kwargs: SaeKwargs`) in the namespace of the base class
# (lorasae/core/cli.py), where the name does not exist; real annotation objects need no resolution.

import dataclasses
import math
from dataclasses import dataclass
from typing import TypeVar

from lorasae.core.cli import CommonArgs
from lorasae.core.paths import portable
from lorasae.model import defaults as model_defaults
from lorasae.model.data import default_dataset
from lorasae.model.defaults import (
    PAPER_CTX_LEN,
    default_ctx_len,
    default_k,
    default_num_train_tokens,
    default_num_val_tokens,
    default_sae_layer,
    default_val_batch_size,
)
from lorasae.model.load import model_key
from lorasae.sae.registry import ARCHITECTURES as REGISTRY
from lorasae.train.options import (
    LR_SCHEDULERS,
    ArchitectureOptions,
    CurveOptions,
    LogOptions,
    ModificationOptions,
    ObjectiveOptions,
    OptimizerOptions,
    PersistenceOptions,
    SaeKwargs,
    SourceOptions,
    TokenOptions,
    combination_problems,
    curve_val_tokens,
)
from lorasae.train.position_spec import Positions, parse_positions

__all__ = ["ARCHITECTURES", "LR_SCHEDULERS", "SaeKwargs", "TrainSaeConfig", "default_batch_size", "default_k", "default_lr"]  # fmt: skip

ARCHITECTURES = tuple(REGISTRY)  # --architecture's choices (lorasae.sae.registry)
G = TypeVar("G")


def default_batch_size(ctx_len: int) -> int:
    """Sequences per step giving the paper's 1024 tokens per step (at least one sequence)."""
    return max(1, PAPER_CTX_LEN // ctx_len)


def default_lr(d_sae: int) -> float:
    """Gao et al.'s scaling: 2e-4 / sqrt(m / 2^14)."""
    return 2e-4 / math.sqrt(d_sae / 2**14)


@dataclass
class TrainSaeConfig(
    ModificationOptions,
    SourceOptions,
    LogOptions,
    PersistenceOptions,
    CurveOptions,
    OptimizerOptions,
    ObjectiveOptions,
    ArchitectureOptions,
    TokenOptions,
    CommonArgs,
):
    """Train a TopK SAE (or an end-to-end one with --e2e) on the residual stream after decoder layer L.

    The union of the option groups of `lorasae/train/options.py` (bases listed last-first: dataclass
    fields follow the reversed MRO, so --help lists the common flags, then tokens, architecture, ...)."""

    def group(self, kind: type[G]) -> G:
        """This config's options of one group (`cfg.group(OptimizerOptions)`), a copy."""
        return kind(**{f.name: getattr(self, f.name) for f in dataclasses.fields(kind)})  # type: ignore[arg-type]

    # --- filled in by `resolved()` ---------------------------------------------------------------------
    def resolved(
        self, d_model: int, max_positions: int | None = None, n_layers: int | None = None
    ) -> "TrainSaeConfig":
        """A copy with every model-dependent default filled in, validated (the default layer needs
        `n_layers`; without it, the paper's 12)."""
        cfg = dataclasses.replace(self, sae_kwargs=dataclasses.replace(self.sae_kwargs))
        if cfg.sae_kwargs.topk is not None:
            cfg.k = cfg.sae_kwargs.topk
        if cfg.layer is None:
            cfg.layer = default_sae_layer(n_layers) if n_layers else model_defaults.PAPER_SAE_LAYER
        # crosscoder sources: --layers (default: --layer and the one before), unless --models
        if cfg.architecture == "crosscoder" and not cfg.models:
            cfg.layers = sorted(set(cfg.layers)) or ([cfg.layer - 1, cfg.layer] if cfg.layer > 0 else [0, 1])
            cfg.layer = max(cfg.layers)  # the truncated forward runs up to the last source
        cfg.dataset = cfg.dataset or default_dataset(cfg.model_name)
        if cfg.modification_file:  # the same file however it was named (relative, absolute)
            cfg.modification_file = portable(cfg.modification_file)
        cfg.k = cfg.k if cfg.k is not None else default_k(d_model)
        cfg.ctx_len = cfg.ctx_len if cfg.ctx_len is not None else default_ctx_len(max_positions)
        cfg.batch_size = cfg.batch_size if cfg.batch_size is not None else default_batch_size(cfg.ctx_len)
        if cfg.val_batch_size is None:
            cfg.val_batch_size = default_val_batch_size(d_model, cfg.ctx_len)
        if cfg.num_train_tokens is None:
            cfg.num_train_tokens = default_num_train_tokens(d_model, cfg.objective)
        if cfg.num_val_tokens is None:
            cfg.num_val_tokens = default_num_val_tokens(d_model)
        if cfg.curve_val_tokens is None:
            cfg.curve_val_tokens = curve_val_tokens(cfg.num_val_tokens, cfg.num_train_tokens, cfg.num_evals)
        d_sae = d_model * cfg.expansion_factor
        if d_sae < 1:  # default_lr divides by the width: say why instead (validate lists the rest)
            cfg.validate(d_model, max_positions)
        cfg.lr = cfg.lr if cfg.lr is not None else default_lr(d_sae)
        if cfg.dead_after_tokens is None:
            cfg.dead_after_tokens = max(1, min(10_000_000, cfg.num_train_tokens // 10))
        cfg.validate(d_model, max_positions)
        return cfg

    def problems(self, d_model: int, max_positions: int | None = None) -> list[str]:
        """What every option group, and every rule between two groups, finds wrong (empty: nothing)."""
        return [
            *TokenOptions.problems(self, max_positions),
            *ArchitectureOptions.problems(self, d_model),
            *ObjectiveOptions.problems(self),
            *OptimizerOptions.problems(self),
            *CurveOptions.problems(self),
            *PersistenceOptions.problems(self),
            *LogOptions.problems(self),
            *SourceOptions.problems(self, self.ctx_len),
            *ModificationOptions.problems(self),
            *combination_problems(self),
        ]

    def validate(self, d_model: int, max_positions: int | None = None) -> None:
        """Raise one ValueError listing every problem (`problems`)."""
        problems = self.problems(d_model, max_positions)
        if problems:
            raise ValueError("Invalid train_sae settings:\n  " + "\n  ".join(problems))

    # --- derived quantities ----------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """--model (or --model_type); with --models, the first of them (outputs are named after it)."""
        return self.models[0] if self.models else (self.model or self.model_type)

    @property
    def position_index(self) -> Positions:
        """--positions parsed: None (every position) or one index."""
        return parse_positions(self.positions)

    @property
    def kind(self) -> str:
        """`e2e`, `modified` (a --hidden_modification target) or `normal`: the SAE kind in output paths."""
        return "e2e" if self.e2e else "modified" if self.hidden_modification != "none" else "normal"

    @property
    def model_key(self) -> str:
        """Short model name used in output paths (`tiny`, `gemma`, `llama`, ...)."""
        return model_key(self.model_name)

    @property
    def tokens_per_step(self) -> int:
        assert self.ctx_len is not None and self.batch_size is not None, "call resolved() first"
        return self.batch_size * self.ctx_len

    @property
    def total_steps(self) -> int:
        """Optimiser steps: enough global batches to cover `num_train_tokens` (at least one)."""
        assert self.num_train_tokens is not None, "call resolved() first"
        return max(1, math.ceil(self.num_train_tokens / self.tokens_per_step))

    @property
    def warmup_steps(self) -> int:
        return max(1, min(self.lr_warmup_steps, self.total_steps // 10))

    @property
    def num_evals(self) -> int:
        """Evaluation intervals: the curve has `num_evals + 1` points (first before training, last at 100%)."""
        return max(1, round(100 / self.eval_every_pct))

    def eval_steps(self) -> list[int]:
        """Step after which curve point i is taken: round(i/n · total) for i = 0..n (0 = before training)."""
        n = self.num_evals
        return [round(i * self.total_steps / n) for i in range(n + 1)]

    def checkpoint_steps(self) -> dict[int, int]:
        """{percentage: step after which that checkpoint is saved} for 10%, 20%, …, 100%."""
        pcts = range(self.checkpoint_every_pct, 101, self.checkpoint_every_pct)
        return {pct: max(1, round(pct * self.total_steps / 100)) for pct in pcts}

    # fields whose change makes a saved training state incompatible with this run
    RESUME_KEYS = (
        "layer",
        "num_train_tokens",
        "num_val_tokens",
        "ctx_len",
        "batch_size",
        "expansion_factor",
        "k",
        "e2e",
        "auxk_alpha",
        "lr",
        "lr_warmup_steps",
        "max_grad_norm",
        "dead_after_tokens",
        "eval_every_pct",
        "checkpoint_every_pct",
        "dataset",
        "seed",
        "text_field",
        "architecture",
        "layers",
        "sae_kwargs",
        "lr_scheduler",
        "hidden_modification",
        "modification_file",
        "models",
        "positions",
    )
