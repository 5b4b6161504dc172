"""Checkpoints and the resumable training state.

- SAE checkpoints (SAELens on-disk format, `cfg.json` + `sae_weights.safetensors`) at
  `saved_saes/<model>/<normal|e2e>/expansion_<E>_L0_<k>[__<variant>][-<pct>pct]/model.layers.<L>/`
  (`sae_names.sae_variant`: the weight-affecting settings off their defaults); the training
  position (step, tokens, minutes, validation CE) goes into the cfg's metadata.
- The training state (SAE weights, optimiser, scheduler, step, curve, dead-latent counters, RNG) is one
  file, `saved_saes/<model>/<kind>/expansion_<E>_L0_<k>[__<variant>]/training_state.model.layers.<L>.pt`, beside the
  final SAE's folder (not inside it, so no folder ever holds a half-finished SAE). It is replaced
  atomically at every checkpoint and, with `--save_every_steps N`, every N steps.
"""

from __future__ import annotations

import random
import re
import warnings
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lorasae.core.atomic import atomic_save_file
from lorasae.core.errors import LorasaeError
from lorasae.core.paths import (
    architecture_sae_tag,
    crosscoder_tag,
    modified_sae_tag,
    relu_sae_tag,
    sae_curve_path,
    sae_dir,
    sae_tag,
    with_variant,
)
from lorasae.model.defaults import sae_defaults
from lorasae.model.load import ModelShape, model_key, model_shape
from lorasae.train.config import SaeKwargs, TrainSaeConfig
from lorasae.train.options import KL_FT_SUFFIX
from lorasae.train.sae_names import sae_variant

STATE_VERSION = 1


class ResumeError(LorasaeError, ValueError):
    """The saved training state cannot continue this run (different settings or model)."""


def checkpoint_dir(cfg: TrainSaeConfig, pct: int | None = None) -> Path:
    """Folder of the SAE checkpoint at `pct` percent (None: the final SAE) of a resolved run:
    `<tag>[__<variant>][-<pct>pct]`, the variant naming the weight-affecting settings off their naming
    default (`lorasae.train.sae_names.sae_variant`; none for the paper's default run, whose folder keeps
    the original's name)."""
    assert cfg.k is not None
    tag = _family_tag(cfg)
    if cfg.objective == "kl":  # a KL fine-tune: beside the SAEs of its kind, never taken for its parent
        parent = _kl_parent_tag(cfg, tag)
        tag = with_variant(
            f"{parent or tag}{KL_FT_SUFFIX}", sae_variant(cfg, parent_named=parent is not None)
        )
    else:
        tag = with_variant(tag, sae_variant(cfg))
    if pct is not None:
        tag = f"{tag}-{pct}pct"
    if cfg.hidden_modification != "none":  # saved_saes/<model>/modified/<modification>__<file>__<tag>/
        tag = modified_sae_tag(cfg.hidden_modification, Path(str(cfg.modification_file)).stem, tag)
    layers = (cfg.layers or cfg.layer) if cfg.architecture == "crosscoder" else cfg.layer
    return sae_dir(cfg.model_key, cfg.kind, cfg.expansion_factor, cfg.k, layers, tag=tag)


def planned_dir(cfg: TrainSaeConfig, pct: int | None = None) -> Path:
    """`checkpoint_dir` of a config not yet resolved: where train_sae.py would write it (for the scripts
    that train an SAE when its folder is missing)."""
    shape = model_shape(cfg.model_name)
    return checkpoint_dir(cfg.resolved(shape.d_model, shape.max_positions, shape.n_layers), pct)


def _family_tag(cfg: TrainSaeConfig) -> str:
    """The SAE's tag without variant or checkpoint suffix: the paper's `expansion_<E>_L0_<k>` for TopK,
    the architecture's tag otherwise (`paths.relu_sae_tag`, `crosscoder_tag`, `architecture_sae_tag`)."""
    assert cfg.k is not None
    kw = cfg.sae_kwargs
    if cfg.architecture == "crosscoder":  # --models: every source reads --layer
        k = None if kw.crosscoder_activation == "relu" else cfg.k
        keys = [model_key(m) for m in cfg.models]
        return crosscoder_tag(cfg.expansion_factor, cfg.layers, k, kw.sparsity, None, keys)
    if cfg.architecture == "relu":
        return relu_sae_tag(cfg.expansion_factor, kw.sparsity)
    if cfg.architecture != "topk":  # topk keeps the paper's names
        relu = cfg.architecture in ("transcoder", "skip_transcoder") and kw.transcoder_activation == "relu"
        coefficient = kw.sparsity if relu else kw.l0_coefficient
        return architecture_sae_tag(
            cfg.architecture, cfg.expansion_factor, None if relu else cfg.k, coefficient
        )
    return sae_tag(cfg.expansion_factor, cfg.k)


def _kl_parent_tag(cfg: TrainSaeConfig, family_tag: str) -> str | None:
    """The tag a KL fine-tune is named after: its parent's folder when the parent is one of this family's
    SAEs (`<tag>[__<variant>]` or a checkpoint of one, `...-<pct>pct`, so fine-tunes of two checkpoints
    or of two runs get two folders); None for any other parent (the fine-tune's variant then names it)."""
    parent = Path(str(cfg.init_sae)).parent.name if cfg.init_sae else ""
    pattern = re.escape(family_tag) + r"(?:__(?!kl-ft)[A-Za-z0-9._+-]+?)?(?:-\d+pct)?"
    if re.fullmatch(pattern, parent) and KL_FT_SUFFIX not in parent:
        return parent
    return None


def is_default_sae(cfg: TrainSaeConfig, shape: ModelShape) -> bool:
    """Whether the run trains the model's default SAE (`model_defaults.sae_defaults`: layer, expansion,
    k), a TopK one (normal or e2e) on one model, not a KL fine-tune of another SAE (its folder is
    `<tag>__kl-ft`), with every weight-affecting setting at its naming default (a plain folder name): the
    SAE whose curves keep the original's file names."""
    return (
        cfg.architecture == "topk"
        and cfg.objective != "kl"
        and cfg.kind in ("normal", "e2e")
        and not cfg.models
        and (cfg.layer, cfg.expansion_factor, cfg.k) == sae_defaults(shape)
        and not sae_variant(cfg)
    )


def curve_path(cfg: TrainSaeConfig, quantity: str, shape: ModelShape) -> Path:
    """The run's curve file (`paths.sae_curve_path`): the original's name for the default SAE, else one
    named after the SAE's folder (`<tag>/model.layers.<L>`)."""
    final = checkpoint_dir(cfg)
    sae = None if is_default_sae(cfg, shape) else f"{final.parent.name}/{final.name}"
    return sae_curve_path(quantity, cfg.model_key, cfg.kind, sae=sae)


def state_path(cfg: TrainSaeConfig) -> Path:
    final = checkpoint_dir(cfg)
    return final.parent / f"training_state.{final.name}.pt"


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly where it stopped."""

    step: int  # optimiser steps completed
    sae: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    val_loss: list[float]  # curve points so far (first = before training)
    minutes: list[float]  # cumulative training minutes at each point (evaluation excluded)
    train_minutes: float  # cumulative training minutes at `step`
    tokens_since_fired: torch.Tensor  # [d_sae] int64
    base_ce: float | None
    config: dict[str, Any]
    rng: dict[str, Any] = field(default_factory=dict)
    version: int = STATE_VERSION


def capture_rng() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch (CPU and CUDA) in a form `torch.load(weights_only=True)` reads."""
    np_state = np.random.get_state()
    rng: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    if not rng:
        return
    random.setstate(_to_tuple(rng["python"]))
    name, keys, *rest = rng["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(rng["cuda"])
        except RuntimeError as err:  # fewer GPUs than when saved
            warnings.warn(f"CUDA RNG state not restored: {err}", stacklevel=2)


def _to_plain(obj: Any) -> Any:
    return [_to_plain(o) for o in obj] if isinstance(obj, tuple | list) else obj


def _to_tuple(obj: Any) -> Any:
    return tuple(_to_tuple(o) for o in obj) if isinstance(obj, list) else obj


def save_state(path: Path, state: TrainingState) -> Path:
    """Write the state atomically (temp file + rename): a kill mid-write leaves the previous state."""
    payload = asdict(state)
    return atomic_save_file(path, lambda tmp: torch.save(payload, tmp))


def load_state(path: Path) -> TrainingState:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ResumeError(
            f"Cannot read the training state {path}: it is damaged or was not written by train_sae.py "
            f"({type(err).__name__}). Delete it and start without --resume."
        ) from err
    if payload.get("version") != STATE_VERSION:
        raise ResumeError(
            f"{path} is a version {payload.get('version')} training state; this code reads version "
            f"{STATE_VERSION}. Start without --resume."
        )
    return TrainingState(**payload)


LATER_SETTINGS: dict[str, Any] = {"objective": "reconstruction", "kl_mse_weight": None}
"""Resume settings (and `sae_kwargs` entries, `LATER_SAE_KWARGS`) added with issue 28's architectures
and KL fine-tuning: a run names them only where they differ from these defaults, so every run trained
before keeps its settings, fingerprint and resumable state."""
LATER_SAE_KWARGS: dict[str, Any] = {
    "threshold_lr": 0.01,
    "matryoshka_widths": [],
    "jumprelu_bandwidth": 0.001,
    "jumprelu_init_threshold": 0.001,
    "jumprelu_sparsity_loss": "step",
    "l0_coefficient": 1e-3,
    "l0_warmup_steps": 0,
    "transcoder_activation": "relu",
}


ADDED_SETTINGS: dict[str, Any] = {
    "architecture": "topk",
    "layers": [],
    "sae_kwargs": {k: v for k, v in asdict(SaeKwargs()).items() if k not in LATER_SAE_KWARGS},
    "lr_scheduler": "linear_decay",
    "hidden_modification": "none",
    "modification_file": None,
}
"""Resume settings added after training states were first written: a state without them ran with these."""


def resume_settings(cfg: TrainSaeConfig) -> dict[str, Any]:
    """The settings a saved state must share with the run resuming it."""
    values = {key: getattr(cfg, key) for key in TrainSaeConfig.RESUME_KEYS}
    # nested settings (sae_kwargs) as plain dicts: the state file is read with weights_only=True
    values = {key: asdict(v) if is_dataclass(v) else v for key, v in values.items()}
    values["sae_kwargs"] = {
        k: v for k, v in values["sae_kwargs"].items() if k not in LATER_SAE_KWARGS or v != LATER_SAE_KWARGS[k]
    }
    values |= {k: getattr(cfg, k) for k, default in LATER_SETTINGS.items() if getattr(cfg, k) != default}
    return values | {"model": cfg.model_key}


def check_compatible(state: TrainingState, cfg: TrainSaeConfig, d_model: int, path: Path) -> None:
    """Raise `ResumeError` naming every setting that differs from the saved run, and check that the saved
    SAE's width matches this model."""
    saved, now = {**ADDED_SETTINGS, **LATER_SETTINGS, **state.config}, LATER_SETTINGS | resume_settings(cfg)
    diffs = [
        f"--{key}: saved {saved.get(key)!r}, now {value!r}"
        for key, value in now.items()
        if saved.get(key) != value
    ]
    if diffs:
        raise ResumeError(
            f"The training state {path} was saved with different settings:\n  "
            + "\n  ".join(diffs)
            + "\nRerun with the saved settings, or start a new run without --resume."
        )
    d_in = state.sae["W_dec"].shape[1]
    d_sae = state.sae["W_dec"].shape[0]
    assert cfg.expansion_factor is not None
    if d_in != d_model or d_sae != d_model * cfg.expansion_factor:
        raise ResumeError(
            f"The training state {path} holds an SAE of width {d_in}→{d_sae}, but this model's d_model is "
            f"{d_model} (expected {d_model}→{d_model * cfg.expansion_factor}): it belongs to another model."
        )
