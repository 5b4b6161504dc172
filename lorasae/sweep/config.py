"""`sweep.py`'s flags: the paper's scaling study (SAE L0, width, layer, model size, LoRA rank, and a LoRA
on one layer at a time) over Gemma Scope SAEs, or over this project's own SAEs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lorasae.core.cli import CommonArgs, field
from lorasae.core.paths import LORA_NAME_KEYS, settings_variant
from lorasae.lora.config import LoraHyperparams

AXES = ("l0", "width", "layer", "model_size", "single_layer")

# sweep settings that change no run and no tag: left out of the manifest's run record and its name
MANIFEST_NOT_IDENTITY = frozenset(
    {"device", "wandb", "progress", "overwrite", "shard", "dry_run", "figures", "save_model", "sweep_name"}
)
# ... and the model, which the manifest's name carries already
NOT_IN_NAME = MANIFEST_NOT_IDENTITY | {"model_type", "model"}
# short names of the settings in a manifest's name (the LoRA settings by train_lora.py's, `LORA_NAME_KEYS`)
SHORT_NAMES = {
    "catalog": "catalog", "axes": "axes", "layer": "layer", "width": "width", "l0": "l0", "layers": "layers",
    "widths": "widths", "ranks": "ranks", "rank": "rank", "LoRA_layers": "lora", "single_layers": "single",
    "models": "models",
} | LORA_NAME_KEYS  # fmt: skip


def parse_width(text: str | int) -> int:
    """`16k` → 16384, `1m` → 1048576 (Gemma Scope's names), `1024` → 1024."""
    from lorasae.results.names import expand_width

    s = str(text).strip().lower()
    unit = s[-1] if s[-1:] in ("k", "m") else ""
    return expand_width(int(s[: len(s) - len(unit)]), unit)


@dataclass
class SweepConfig(LoraHyperparams, CommonArgs):
    """LoRA adapters for a grid of SAEs (the paper's scaling study); writes the usual train_lora.py outputs
    and draws the scaling figures. Each run trains with train_lora.py's settings (the LoRA
    hyperparameters below are train_lora.py's own fields, passed on to every run)."""

    catalog: str = "gemma-scope"
    """Where the SAEs come from: gemma-scope (sae-lens releases; models gemma, gemma-9b) or ours
    (the final TopK SAEs train_sae.py saved for --model_type under saved_saes/)."""

    axes: list[str] = field(default_factory=lambda: list(AXES))
    """Sweeps to run: l0 width layer model_size single_layer (each at every --ranks, but single_layer
    at --rank)."""

    layer: int | None = None
    """Layer of the default SAE that the other sweeps hold fixed. Default: 12 on Gemma-2-2B (20 on
    9B), else the layer most of the catalog's SAEs read."""

    width: str | None = None
    """Width of the default SAE (16k, 131k, 1024 ...). Default: 16k on Gemma-2-2B (131k on 9B), else
    the most common width."""

    l0: float | None = None
    """L0 of the default SAE (the nearest available). Default: Gemma Scope's canonical SAE, else the
    middle L0."""

    layers: list[int] | None = field(default=None, alias=["--sweep_layers"])
    """Layers of the layer sweep: --sweep_layers (--layers, train_sae.py's crosscoder sources, kept here
    as an alias). Default: up to 9 evenly spaced layers that have SAEs of --width."""

    widths: list[str] | None = None
    """Widths of the width sweep. Default: every width available at --layer."""

    ranks: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    """LoRA ranks; the L0, width, layer and model-size sweeps run each."""

    rank: int = 64
    """LoRA rank of the one-layer-at-a-time runs."""

    LoRA_layers: str = field(default="all", alias=["--lora_layers"])
    """Layers that get adapters in the L0, width, layer and model-size sweeps: all, after, or a list."""

    single_layers: str = "after"
    """Layers that each get their own one-layer LoRA in the single_layer sweep: after (those after the
    SAE), all, or a list/range such as 0-25."""

    models: list[str] = field(default_factory=lambda: ["gemma", "gemma-9b"], alias=["--sweep_models"])
    """Models of the model-size sweep (each at its own default SAE): --sweep_models (--models,
    train_sae.py's crosscoder models, kept here as an alias)."""

    shard: str = "0/1"
    """Run only part i of n of the plan (i/n), e.g. one process per GPU:
    CUDA_VISIBLE_DEVICES=1 python sweep.py --shard 1/4."""

    dry_run: bool = False
    """Print the plan and exit."""

    figures: bool = True
    """Draw the scaling figures and print the results table at the end."""

    sweep_name: str | None = None
    """Name of this sweep's outputs: its manifest `data/sweeps/<model>[__<name>].json`, the shard config
    beside it and the figures drawn from it (`<model>_scaling[__<name>].png` ...). Default: its settings off
    these defaults (e.g. `catalog-ours_ranks-16_..._h-<digest>`), so a sweep with other settings never
    replaces another's; '' takes the plain names (`make demo`'s sweep does)."""

    def shard_index(self) -> tuple[int, int]:
        try:
            i, n = (int(x) for x in self.shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like 0/4, got {self.shard!r}") from None
        if not 0 <= i < n:
            raise ValueError(f"--shard {self.shard}: the part must be in 0…{n - 1}")
        return i, n

    def check(self) -> None:
        unknown = sorted(set(self.axes) - set(AXES))
        if unknown:
            raise ValueError(f"Unknown sweep axes {unknown}: choose from {list(AXES)}")
        if not self.ranks or min(self.ranks) < 1 or self.rank < 1:
            raise ValueError("LoRA ranks must be positive")
        self.shard_index()
        check_sweep_name(self.sweep_name)


def sweep_variant(cfg: SweepConfig) -> str:
    """What the manifest, shard config and figures of the sweep `cfg` carry after the model's name: its
    `--sweep_name` when given ('' for the plain names: the demo's sweep), else its settings off sweep.py's
    defaults (`lorasae.core.paths.settings_variant`; '' with the defaults: the original names). Every shard
    of one sweep has the same (they read the sweep's config, its name included)."""
    if cfg.sweep_name is not None:
        check_sweep_name(cfg.sweep_name)
        return cfg.sweep_name
    return settings_variant(vars(cfg), vars(SweepConfig()), SHORT_NAMES, NOT_IN_NAME)


def check_sweep_name(name: str | None) -> None:
    """A ValueError unless `name` can stand in a file name after `<model>__` ('' and None can)."""
    if name is not None and not re.fullmatch(r"([A-Za-z0-9.+-]+(_[A-Za-z0-9.+-]+)*)?", name):
        raise ValueError(f"--sweep_name {name!r}: use letters, digits, '.', '+', '-' and single '_' only")
