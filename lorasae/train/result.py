"""What a `train_sae.py` run returns (`TrainResult`) and the one-line summary it prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorasae.train.architecture import uses_sparsity
from lorasae.train.config import TrainSaeConfig


@dataclass
class TrainResult:
    steps: int
    tokens: int
    base_ce: float | None
    val_loss: list[float]
    minutes: list[float]
    val_fvu: float
    val_l0: float
    val_dead_fraction: float  # latents that never fired on the validation tokens
    train_dead_fraction: float  # latents that did not fire in the last `dead_after_tokens` training tokens
    final_dir: Path
    train_metrics: dict[str, float] = field(default_factory=dict)  # means over the last logging window
    checkpoint_dirs: dict[int, Path] = field(default_factory=dict)
    state_path: Path | None = None
    per_source: dict = field(default_factory=dict)  # crosscoders: {layer (--models: model key): metrics}
    curve_files: dict[str, Path] = field(default_factory=dict)  # {val_loss|time: the run's curve file}


def summary_line(cfg: TrainSaeConfig, r: TrainResult) -> str:
    modified = cfg.hidden_modification != "none"  # never spliced: the curve is the val FVU on f(x)
    what = f"val FVU of {cfg.hidden_modification} (no spliced CE)" if modified else "spliced val CE"
    ce = f"{what} {r.val_loss[0]:.4f} -> {r.val_loss[-1]:.4f}" if r.val_loss else "no curve"
    if cfg.curve_val_tokens and cfg.num_val_tokens and cfg.curve_val_tokens < cfg.num_val_tokens:
        ce += f" on the first {cfg.curve_val_tokens:,} of {cfg.num_val_tokens:,} val tokens (short run)"
    final = f"val FVU {r.val_fvu:.4f}, L0 {r.val_l0:.2f}"
    if cfg.final_val_tokens and cfg.num_val_tokens and cfg.final_val_tokens < cfg.num_val_tokens:
        final += f" on the first {cfg.final_val_tokens:,} val tokens"
    base = f"original model {r.base_ce:.4f}" if r.base_ce is not None else f"of {cfg.modification_file}"
    sparsity = f"λ={cfg.sae_kwargs.sparsity:g}" if uses_sparsity(cfg) else f"k={cfg.k}"
    where = f"layers {cfg.layers}" if cfg.architecture == "crosscoder" else f"layer {cfg.layer}"
    if cfg.models:
        where = f"layer {cfg.layer} of {len(cfg.models)} models"
    return (
        f"{cfg.kind} {cfg.architecture} SAE {cfg.model_key} {where} ({sparsity}, width {cfg.expansion_factor}x): "
        f"{r.steps} steps, {r.tokens:,} tokens, {r.minutes[-1] if r.minutes else 0:.2f} train min; {ce} "
        f"({base}); {final}, "
        f"dead {100 * r.train_dead_fraction:.1f}% -> {r.final_dir}"
    )
