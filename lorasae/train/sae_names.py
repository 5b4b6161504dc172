"""What an SAE folder's name carries besides its tag (issue 25: the path is unique per identity): every
setting that changes the SAE's weights and differs from its naming default, as `paths.name_variant` writes
it (`n-100000`, `lr-0.001`, `seed-3`), after the tag and before a checkpoint's `-<pct>pct`:
`expansion_8_L0_4__n-100000-50pct`. A run with the defaults keeps the original repository's plain name
(`expansion_8_L0_4`).

The naming default of each setting is train_sae.py's default for the model, given the other settings it
derives from (the batch size's for the run's --ctx_len, --dead_after_tokens' for its --num_train_tokens),
so a run that changes one setting is named after that one setting. Settings that only change what is
measured (`MEASUREMENT_SETTINGS`) are never in the name: a rerun differing only there meets the first
run's folder and is refused (`lorasae.train.existing`), since its weights would be the same."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import torch

from lorasae.core.paths import portable, settings_variant
from lorasae.model.load import ModelShape, model_shape
from lorasae.train.config import TrainSaeConfig, default_batch_size, default_lr
from lorasae.train.sae_kwargs import SaeKwargs

SAE_NAME_KEYS = {
    "num_train_tokens": "n",
    "kl_mse_weight": "w",
    "lr": "lr",
    "seed": "seed",
    "batch_size": "bs",
    "ctx_len": "ctx",
    "num_val_tokens": "val",
    "dataset": "data",
    "text_field": "field",
    "positions": "pos",
    "auxk_alpha": "auxk",
    "lr_warmup_steps": "warmup",
    "lr_scheduler": "sched",
    "max_grad_norm": "clip",
    "dead_after_tokens": "dead",
    "init_sae": "init",
    "optimizer": "opt",
}
"""The weight-affecting settings an SAE folder's name carries when off their naming default, with their
short names (`sae_kwargs` entries the tag does not show: `SAE_KWARG_NAME_KEYS`). --num_val_tokens is one:
training starts after the validation chunks (`lorasae.model.data.load_token_split`); --dead_after_tokens
only with --auxk_alpha > 0 (dead latents feed the AuxK loss, else only a statistic)."""

SAE_KWARG_NAME_KEYS = {
    "sparsity": "l1",
    "recon_loss": "recon",
    "sparsity_warmup_steps": "l1warmup",
    "crosscoder_activation": "xact",
    "threshold_lr": "thlr",
    "matryoshka_widths": "widths",
    "jumprelu_bandwidth": "bw",
    "jumprelu_init_threshold": "theta0",
    "jumprelu_sparsity_loss": "l0loss",
    "l0_coefficient": "l0coef",
    "l0_warmup_steps": "l0warmup",
    "transcoder_activation": "tact",
}
"""Short names of the `sae_kwargs` an SAE folder's name carries when its tag does not show them and they are
off their defaults (e.g. the demo's JumpReLU: `jumprelu_expansion_8_l0coef_0.01__theta0-10.5_l0warmup-50`)."""

MEASUREMENT_SETTINGS = frozenset(
    {"eval_every_pct", "checkpoint_every_pct", "curve_val_tokens", "final_val_tokens", "val_batch_size"}
)
"""Settings that change what a run measures or keeps, never its weights: not in the name."""


def _tag_kwargs(cfg: TrainSaeConfig) -> set[str]:
    """The `sae_kwargs` entries the SAE's tag already shows (`state.checkpoint_dir`'s tags)."""
    kw, arch = cfg.sae_kwargs, cfg.architecture
    shown = {"topk"}  # sets --k
    if arch == "relu":
        shown |= {"sparsity"}
    elif arch == "crosscoder":
        shown |= {"crosscoder_activation"} | ({"sparsity"} if kw.crosscoder_activation == "relu" else set())
    elif arch == "jumprelu":
        shown |= {"l0_coefficient"}
    elif arch in ("transcoder", "skip_transcoder"):
        shown |= {"transcoder_activation"} | ({"sparsity"} if kw.transcoder_activation == "relu" else set())
    return shown


def naming_defaults(cfg: TrainSaeConfig, shape: ModelShape) -> dict[str, Any]:
    """The value of each named setting in a train_sae.py run with default flags on this model (given the
    run's own values of the settings a default derives from)."""
    from lorasae.model.data import default_dataset
    from lorasae.model.defaults import default_ctx_len, default_num_train_tokens, default_num_val_tokens

    assert cfg.ctx_len is not None and cfg.num_train_tokens is not None, "call resolved() first"
    plain = {f.name: f.default for f in dataclasses.fields(TrainSaeConfig)}
    try:
        dataset = default_dataset(cfg.model_name)
    except ValueError:  # a protein model: no default data
        dataset = None
    return {
        **{key: plain[key] for key in SAE_NAME_KEYS if key in plain},
        "num_train_tokens": default_num_train_tokens(shape.d_model, cfg.objective),
        "kl_mse_weight": 1.0 if cfg.objective == "kl" else 0.0,
        "lr": default_lr(shape.d_model * cfg.expansion_factor),
        "batch_size": default_batch_size(cfg.ctx_len),
        "ctx_len": default_ctx_len(shape.max_positions),
        "num_val_tokens": default_num_val_tokens(shape.d_model),
        "dataset": dataset,
        "dead_after_tokens": max(1, min(10_000_000, cfg.num_train_tokens // 10)),
        "init_sae": None,
    }


INHERITED = ("seed", "batch_size", "ctx_len", "num_val_tokens", "dataset", "text_field", "positions",
             "auxk_alpha", "lr_warmup_steps", "lr_scheduler", "max_grad_norm")  # fmt: skip
"""The named settings whose naming default, for a KL fine-tune named after its parent's folder, is the
parent's recorded value (the parent's name shows them already), as are its `sae_kwargs`."""


def sae_variant(cfg: TrainSaeConfig, parent_named: bool = False) -> str:
    """The variant of a run's SAE folder name, its settings resolved for its model ('' with the naming
    defaults: the plain name). `parent_named`: a KL fine-tune named after its parent's folder
    (`state.checkpoint_dir`): --init_sae is not named again, and the settings it shares with the parent's
    run record (`INHERITED`, `sae_kwargs`) are named only where they differ from the parent's (a parent
    without a record: not named)."""
    shape = model_shape(cfg.model_name)
    cfg = cfg.resolved(shape.d_model, shape.max_positions, shape.n_layers)  # the same for a resolved one
    settings = {key: getattr(cfg, key) for key in SAE_NAME_KEYS if hasattr(cfg, key)}
    settings["kl_mse_weight"] = cfg.mse_weight
    settings["optimizer"], optimizer_default = optimizer_setting(cfg.optimizer, cfg.device)
    if cfg.auxk_alpha <= 0:  # dead latents only feed the AuxK loss: without it, only a statistic
        del settings["dead_after_tokens"]
    if cfg.dataset and Path(cfg.dataset).exists():  # a local file by its portable path (as its record)
        settings["dataset"] = portable(cfg.dataset)
    settings["init_sae"] = portable(cfg.init_sae) if cfg.init_sae and not parent_named else None
    defaults = naming_defaults(cfg, shape) | {"optimizer": optimizer_default}
    kw_defaults = dataclasses.asdict(SaeKwargs())
    parent = (_parent_settings(cfg) or _own(cfg)) if parent_named else {}
    defaults |= {key: parent[key] for key in INHERITED if key in parent}
    kw_defaults |= parent.get("sae_kwargs") or {}
    shown = _tag_kwargs(cfg)
    for key, value in dataclasses.asdict(cfg.sae_kwargs).items():
        if key not in shown:
            settings[key], defaults[key] = value, kw_defaults.get(key)
    return _capped(settings_variant(settings, defaults, SAE_NAME_KEYS | SAE_KWARG_NAME_KEYS))


def optimizer_setting(kind: str, device: str | torch.device) -> tuple[str, str]:
    """(the optimiser --optimizer `kind` gives on `device`, the one `auto` gives there): a folder names
    its optimiser only when it is not what `auto` picks on the device it trained on (8-bit Adam on CUDA with
    bitsandbytes, else Adam), so `--optimizer adam` on the CPU keeps the plain name."""
    import warnings

    from lorasae.core.runtime import parse_device
    from lorasae.train.optim import resolve_optimizer_kind

    try:
        where = parse_device(device)
    except (ValueError, RuntimeError):  # a device this machine cannot name: the run itself refuses it
        return "auto", "auto"
    with warnings.catch_warnings():  # adam8bit without CUDA falls back to Adam: named as what runs
        warnings.simplefilter("ignore")
        return resolve_optimizer_kind(kind, where), resolve_optimizer_kind("auto", where)


MAX_VARIANT = 64
"""The longest variant written in full: a longer one keeps its first settings and ends in `_h-<digest>` of
the whole, so folder and curve file names stay within the file system's 255 bytes."""


def _capped(variant: str) -> str:
    if len(variant) <= MAX_VARIANT:
        return variant
    digest = hashlib.sha256(variant.encode()).hexdigest()[:8]
    return variant[: MAX_VARIANT - 11].rstrip("_-.") + "_h-" + digest


def _own(cfg: TrainSaeConfig) -> dict[str, Any]:
    """A parent without a run record: its shared settings taken as the fine-tune's (not named)."""
    return {key: getattr(cfg, key) for key in INHERITED} | {"sae_kwargs": dataclasses.asdict(cfg.sae_kwargs)}


def _parent_settings(cfg: TrainSaeConfig) -> dict[str, Any]:
    """The settings --init_sae's run record names (empty without a record: a legacy or external SAE)."""
    from lorasae.core.records import read_record

    record = read_record(Path(str(cfg.init_sae))) if cfg.init_sae else None
    settings = record.get("settings") if record is not None else None
    return settings if isinstance(settings, dict) else {}


__all__ = [
    "MEASUREMENT_SETTINGS",
    "SAE_KWARG_NAME_KEYS",
    "SAE_NAME_KEYS",
    "naming_defaults",
    "optimizer_setting",
    "sae_variant",
]
