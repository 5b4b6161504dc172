"""The list of LoRA runs a sweep makes. Each sweep moves one quantity away from a default SAE and holds
the rest: L0 (every SAE at the default layer and width), width (the canonical SAE of each width at the
default layer), layer (the canonical SAE of the default width at each layer), model size (each model's
default SAE), each at every rank; and one LoRA per single layer on the default SAE. A run several sweeps
share (the default SAE at a rank) is made once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lorasae.lora.adapters import lora_layer_list
from lorasae.model.load import model_key
from lorasae.sweep.catalog import GEMMA_SCOPE, Catalog, SaeEntry
from lorasae.sweep.config import SweepConfig, parse_width

MAX_LAYER_POINTS = 9


@dataclass
class PlannedRun:
    sae: SaeEntry
    rank: int
    lora_layers: str
    """As train_lora.py's --LoRA_layers takes it: all, after, or a list."""
    n_layers: int
    axes: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return (self.sae.model, self.sae.source, self.rank, tuple(self.lora_layer_indices()))

    def lora_layer_indices(self) -> list[int]:
        return lora_layer_list(self.lora_layers, [self.sae.layer], self.n_layers)


@dataclass
class Plan:
    runs: list[PlannedRun]
    defaults: dict[str, SaeEntry]
    """The default SAE of each model."""
    axis_saes: dict[str, list[SaeEntry]]
    """The SAEs each sweep plots (for the figures' manifest)."""
    notes: list[str]


def _most_common(values: Sequence) -> object:
    return max(sorted(set(values)), key=values.count)


def default_entry(cfg: SweepConfig, catalog: Catalog, model: str, use_flags: bool) -> SaeEntry:
    """The SAE a model's sweeps are centred on: the flags' layer/width/L0 (main model only), else the
    paper's Gemma Scope SAE (at the paper's layer and width, the paper's L0; elsewhere the canonical
    one), else the catalog's most common layer and width and the middle L0."""
    scope = GEMMA_SCOPE.get(model_key(model))
    layer = cfg.layer if use_flags and cfg.layer is not None else None
    width = parse_width(cfg.width) if use_flags and cfg.width is not None else None
    if layer is None:
        layer = scope.layer if scope else int(_most_common([e.layer for e in catalog.entries]))
    if width is None:
        at_layer = [e.width for e in catalog.at(layer=layer)] or [e.width for e in catalog.entries]
        width = scope.width if scope else int(_most_common(at_layer))
    l0 = cfg.l0 if use_flags else None
    if l0 is None and scope and (layer, width) == (scope.layer, scope.width):
        l0 = scope.l0
    entry = catalog.pick(layer, width, l0)
    if entry is None:
        raise LookupError(
            f"No {model} SAE at layer {layer} with width {width}: layers with SAEs {catalog.layers()}, "
            f"widths at layer {layer}: {catalog.widths(layer)}."
        )
    return entry


def evenly_spaced(values: Sequence[int], keep: int, n: int) -> list[int]:
    """At most `n` of `values` spread evenly from first to last, always including `keep`."""
    values = sorted(values)
    if len(values) <= n:
        return values
    picked = {values[round(i * (len(values) - 1) / (n - 1))] for i in range(n)}
    if keep in values:
        nearest = min(picked, key=lambda v: abs(v - keep))
        picked = (picked - {nearest}) | {keep}
    return sorted(picked)


def build_plan(cfg: SweepConfig, catalog_for: Callable[[str], Catalog]) -> Plan:
    """Every run of the sweeps in `cfg.axes`; `catalog_for(model)` gives a model's SAEs."""
    cfg.check()
    main = catalog_for(cfg.model_name)
    base = default_entry(cfg, main, cfg.model_name, use_flags=True)
    runs: dict[tuple, PlannedRun] = {}
    axis_saes: dict[str, list[SaeEntry]] = {}
    notes: list[str] = []
    defaults = {cfg.model_name: base}

    def add(
        entries: Sequence[SaeEntry], axis: str, catalog: Catalog, ranks: Sequence[int], lora: str
    ) -> None:
        for entry in entries:
            for rank in ranks:
                run = PlannedRun(entry, rank, lora, catalog.n_layers)
                run = runs.setdefault(run.key, run)
                if axis not in run.axes:
                    run.axes.append(axis)

    def sweep(axis: str, entries: list[SaeEntry]) -> None:
        axis_saes[axis] = entries
        if len(entries) < 2:
            notes.append(f"the {axis} sweep has {len(entries)} SAE(s): a figure needs at least 2 points")
        add(entries, axis, main, cfg.ranks, cfg.LoRA_layers)

    if "l0" in cfg.axes:
        sweep("l0", main.at(base.layer, base.width))
    if "width" in cfg.axes:
        widths = [parse_width(w) for w in cfg.widths] if cfg.widths else main.widths(base.layer)
        sweep("width", _picked(main, [(base.layer, w) for w in widths], base, notes))
    if "layer" in cfg.axes:
        layers = cfg.layers or evenly_spaced(main.layers(base.width), base.layer, MAX_LAYER_POINTS)
        sweep("layer", _picked(main, [(layer, base.width) for layer in layers], base, notes))
    if "model_size" in cfg.axes:
        entries = []
        for model in cfg.models:
            if model == cfg.model_name:
                entry, catalog = base, main
            else:
                try:
                    catalog = catalog_for(model)
                except LookupError as err:  # e.g. --catalog ours with no SAEs trained for that model
                    notes.append(f"model-size sweep: {model} left out ({str(err).splitlines()[0]})")
                    continue
                entry = defaults[model] = default_entry(cfg, catalog, model, use_flags=False)
            entries.append(entry)
            add([entry], "model_size", catalog, cfg.ranks, cfg.LoRA_layers)
        axis_saes["model_size"] = entries
    if "single_layer" in cfg.axes:
        layers = lora_layer_list(cfg.single_layers, [base.layer], main.n_layers)
        for layer in layers:
            add([base], "single_layer", main, [cfg.rank], str(layer))
        axis_saes["single_layer"] = [base]
    return Plan(list(runs.values()), defaults, axis_saes, notes)


def _picked(
    catalog: Catalog, points: list[tuple[int, int]], base: SaeEntry, notes: list[str]
) -> list[SaeEntry]:
    """The SAE at each (layer, width): the default SAE itself at its own point, else the canonical one."""
    out = []
    for layer, width in points:
        entry = (
            base if (layer, width) == (base.layer, base.width) else catalog.pick(layer, width, near=base.l0)
        )
        if entry is None:
            notes.append(f"no SAE at layer {layer} with width {width}: point left out")
        else:
            out.append(entry)
    return out


def shard(runs: Sequence[PlannedRun], index: int, count: int) -> list[PlannedRun]:
    """Part `index` of `count` (every count-th run), for one process per GPU."""
    return list(runs[index::count])
