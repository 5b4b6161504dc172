"""Finding SAEs: this project's own (`saved_saes/<model>/<kind>/<tag>/model.layers.<L>/`, as
`lorasae/core/paths.py` writes them) and external sources (`--sae`: SAELens or sparsify folders, sae-lens
`release/sae_id`), resolved to `SaeRef`s (source, layer, tag) without loading any weights.

The defaults are `train_sae.py`'s (`lorasae/model/defaults.py`): with no flags, the SAE a default
`train_sae.py` run wrote (default layer, expansion 8, default k) is the one chosen. Where the flags leave
several families, the default value of each unspecified flag decides; an ambiguity error is raised only
when that does not single one out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasae.core.paths import root, sanitize
from lorasae.core.records import RECORD_NAME, read_record
from lorasae.model.defaults import PAPER_EXPANSION, default_k, default_sae_layer
from lorasae.model.load import MODEL_REGISTRY, ModelShape, model_key, model_shape
from lorasae.sae.sources import SaeNotFoundError, layer_from_hook_name
from lorasae.store.families import Family, check_architecture, families_in, is_kl_fine_tune, plain_choice
from lorasae.store.sae_records import sae_record
from lorasae.store.tags import (
    LAYER_DIR,
    layer_from_path,
    parse_our_tag,
    parse_sae_tag,
    run_tag,
    source_tag,
)

GEMMA_SCOPE_2B = "gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82"
"""The paper's Gemma-2-2B SAE (SPEC §2)."""
GEMMA_SCOPE_9B = "gemma-scope-9b-pt-res/layer_20/width_131k/average_l0_62"
"""The paper's Gemma-2-9B SAE (SPEC §2)."""
KINDS = ("normal", "e2e")


@dataclass(frozen=True)
class SaeRef:
    """One SAE to splice: its source (a folder or `release/sae_id`), the layer it replaces (None: not
    known before loading, the SAE's own hook layer then), its tag in output paths, and our checkpoint
    percentage if it is one."""

    source: str
    layer: int | None
    tag: str
    checkpoint_pct: int | None = None


@dataclass(frozen=True)
class SaeRun:
    """The SAEs of one LoRA run (several = trained jointly)."""

    refs: tuple[SaeRef, ...]

    @property
    def checkpoint_pct(self) -> int | None:
        return self.refs[0].checkpoint_pct

    @property
    def sources(self) -> list[str]:
        return [r.source for r in self.refs]

    @property
    def layers(self) -> list[int] | None:
        """The spliced layers, in order; None while one of them is known only after loading."""
        layers = [r.layer for r in self.refs]
        return None if any(x is None for x in layers) else sorted(x for x in layers if x is not None)

    def tag(self, layers: Sequence[int] | None = None, default_layer: int | None = None) -> str:
        """The SAE tag in output paths (`lorasae.store.tags.run_tag`)."""
        if layers is None:
            layers = [r.layer for r in self.refs if r.layer is not None]
        by_layer = sorted(self.refs, key=lambda r: r.layer if r.layer is not None else -1)
        return run_tag([r.tag for r in by_layer], list(layers), default_layer)


# --- where a model's SAEs live ----------------------------------------------------------------------


def model_keys(name: str) -> list[str]:
    """Every short name a model's outputs may be saved under: its own key first, then the registry
    aliases of the same hub model and the hub id's last part (`google/gemma-2-2b`: `gemma-2-2b`, the
    original's folder, and `gemma`, this project's `--model_type gemma`)."""
    target = MODEL_REGISTRY.get(name, name)
    keys = [model_key(name)]
    keys += [model_key(alias) for alias, hub in MODEL_REGISTRY.items() if hub == target]
    if "/" in target and not target.startswith("builtin:"):
        keys.append(model_key(target))
    return list(dict.fromkeys(keys))


def saes_folder(model: str, base: Path | None = None) -> Path:
    return (Path(base) if base is not None else root()) / "saved_saes" / sanitize(model_key(model))


def list_our_saes(model: str, base: Path | None = None) -> list[str]:
    """`<kind>/<tag>/model.layers.<L>` of every SAE saved for `model`."""
    folder = saes_folder(model, base)
    if not folder.is_dir():
        return []
    return sorted(str(p.parent.relative_to(folder)) for p in folder.glob("*/*/model.layers.*/cfg.json"))


def _not_found(
    message: str, model: str, base: Path | None, kind: str = "normal", architecture: str = "topk"
) -> SaeNotFoundError:
    """One line: what was asked, the folder searched and what it holds, and what to do."""
    folder = saes_folder(model, base) / kind
    held = list_our_saes(model, base)
    listing = ", ".join(held[:20]) + (f" and {len(held) - 20} more" if len(held) > 20 else "") or "none"
    return SaeNotFoundError(
        f"{message} Searched {folder} (SAEs of this model: {listing}). Train one with `python train_sae.py --model_type "
        f"{model_key(model)} --architecture {architecture} ...`, or pass an SAE with --sae (a folder or a "
        "sae-lens release/sae_id)."
    )


def _families(
    model: str, kind: str, layers: Sequence[int], base: Path | None, architecture: str = "topk"
) -> dict[Family, dict]:
    """`families.families_in` the model's `kind` folder."""
    return families_in(saes_folder(model, base) / kind, layers, architecture)


def _choose_family(
    families: dict[Family, dict],
    expansion_factor: int | None,
    k: int | None,
    shape: ModelShape | None,
    what: str,
    model: str,
    base: Path | None,
    kind: str = "normal",
    architecture: str = "topk",
) -> tuple[Family, dict]:
    wanted = {
        f: v
        for f, v in families.items()
        if (expansion_factor is None or f.expansion == expansion_factor) and (k is None or f.k == k)
    }
    asked = "".join(f" {n} {v}" for n, v in (("expansion", expansion_factor), ("k", k)) if v is not None)
    if not wanted:
        raise _not_found(f"No {what}{asked}.", model, base, kind, architecture)
    # each flag the user left out takes train_sae.py's default, if that decides
    if len(wanted) > 1 and expansion_factor is None:
        wanted = {f: v for f, v in wanted.items() if f.expansion == PAPER_EXPANSION} or wanted
    if len(wanted) > 1 and k is None:
        k_default = default_k((shape or model_shape(model)).d_model)
        wanted = {f: v for f, v in wanted.items() if f.k == k_default} or wanted
    if len(wanted) > 1 and (chosen := plain_choice(wanted)):  # runs differing only in training settings
        plain, others, folder = chosen[0], ", ".join(chosen[1]), saes_folder(model, base) / kind
        if plain is None:
            raise _not_found(f"Several {what} differ only in their training settings ({others}) and none was trained with "
                             f"train_sae.py's defaults: give one with --sae {folder}/<one of them>/model.layers.<L>.",
                             model, base, kind, architecture)  # fmt: skip
        print(f"Using {folder / plain.name} (train_sae.py's default settings); also saved with other training "
              f"settings: {others} (give one with --sae <its folder>/model.layers.<L>).", flush=True)  # fmt: skip
        wanted = {plain: wanted[plain]}
    if len(wanted) > 1:
        names = ", ".join(sorted(f.name for f in wanted))
        raise _not_found(
            f"Several {what}{asked} ({names}) and none is train_sae.py's default: choose one with "
            "--expansion_factor and --k, or give its folder with --sae.",
            model,
            base,
            kind,
            architecture,
        )
    return next(iter(wanted.items()))


def our_sae_runs(
    model: str,
    layers: Sequence[int] | None = None,
    kind: str = "normal",
    expansion_factor: int | None = None,
    k: int | None = None,
    checkpoint_percent: int | None = None,
    base: Path | None = None,
    shape: ModelShape | None = None,
    architecture: str = "topk",
) -> list[SaeRun]:
    """train_lora.py's runs over our SAEs of `architecture` (as their records say) at `layers` (default:
    train_sae.py's default layer).

    With `checkpoint_percent`, one run on that checkpoint (100 falls back to the final SAE when no
    `-100pct` folder exists); without, one run per existing 10 %…100 % checkpoint, or on the final SAE
    when there are no checkpoints."""
    if kind not in KINDS:
        raise ValueError(f"SAE kind must be one of {KINDS}, got {kind!r}")
    if not layers:
        shape = shape or model_shape(model)
        layers = [default_sae_layer(shape.n_layers)]
    layer_text = ",".join(str(x) for x in layers)
    what = f"{kind} SAE ({architecture}) of model {model_key(model)!r} at layer(s) {layer_text}"
    family, by_pct = _choose_family(
        _families(model, kind, layers, base, architecture), expansion_factor, k, shape, what, model, base,
        kind, architecture,
    )  # fmt: skip
    if checkpoint_percent is not None:
        if checkpoint_percent in by_pct:
            chosen = [checkpoint_percent]
        elif checkpoint_percent == 100 and None in by_pct:
            chosen = [None]
        else:
            have = ", ".join(f"{p}%" for p in sorted(p for p in by_pct if p is not None)) or "none"
            raise _not_found(
                f"No {checkpoint_percent}% checkpoint of {family.name} at layer(s) {layer_text} "
                f"(checkpoints: {have}).",
                model,
                base,
                kind,
                architecture,
            )
    else:
        chosen = sorted(p for p in by_pct if p is not None) or [None]
    return [
        SaeRun(tuple(SaeRef(str(by_pct[p] / f"model.layers.{x}"), x, by_pct[p].name, p) for x in layers))
        for p in chosen
    ]


def find_sae(
    model: str,
    layer: int | None = None,
    kind: str = "normal",
    expansion_factor: int | None = None,
    k: int | None = None,
    base: Path | None = None,
    architecture: str = "topk",
) -> SaeRef:
    """The SAE an eval uses when not given one: our final SAE of `architecture` (as its run record says)
    and the chosen family at the layer (its 100 % checkpoint, or failing that its latest checkpoint, when
    no final SAE exists); for Gemma-2-2B with none saved, the paper's Gemma Scope SAE (default
    architecture only). Searches every name the model's outputs may be under."""
    check_architecture(architecture)
    error: SaeNotFoundError | None = None
    shape: ModelShape | None = None
    for key in model_keys(model):
        if not (saes_folder(key, base) / kind).is_dir():
            continue
        shape = shape or model_shape(model)
        layers = [layer] if layer is not None else None
        try:
            runs = our_sae_runs(key, layers, kind, expansion_factor, k, None, base, shape, architecture)
        except SaeNotFoundError as err:
            error = error or err
            continue
        by_pct = {run.checkpoint_pct: run.refs[0] for run in runs}
        final = _final_ref(key, kind, runs[0].refs[0], base, architecture)
        return final or by_pct.get(100) or by_pct[max(p for p in by_pct if p is not None)]
    if (
        model_key(model) == "gemma"
        and kind == "normal"
        and architecture == "topk"
        and layer in (None, 12)
        and not (expansion_factor or k)
    ):
        return external_ref(GEMMA_SCOPE_2B, 12)
    raise error or _not_found(
        f"No {kind} SAE ({architecture}) saved for model {model_key(model)!r}.",
        model,
        base,
        kind,
        architecture,
    )


def _final_ref(
    model: str, kind: str, any_ref: SaeRef, base: Path | None, architecture: str = "topk"
) -> SaeRef | None:
    """The final SAE of `any_ref`'s family at its layer (by the records), if it exists."""
    assert any_ref.layer is not None
    for by_pct in _families(model, kind, [any_ref.layer], base, architecture).values():
        if Path(any_ref.source).parent in by_pct.values() and None in by_pct:
            final = by_pct[None]
            return SaeRef(str(final / f"model.layers.{any_ref.layer}"), any_ref.layer, final.name)
    return None


def final_saes(model: str, kind: str = "normal", base: Path | None = None) -> list[SaeRef]:
    """Every final (not a percentage checkpoint) TopK SAE of ours saved for `model`, by family and layer,
    as their run records say."""
    folder = saes_folder(model, base) / kind
    refs = []
    for cfg in sorted(folder.glob("*/model.layers.*/cfg.json")) if folder.is_dir() else ():
        record = sae_record(cfg.parent)
        layer = record.get("layer")
        if (
            record.get("architecture") == "topk"
            and not is_kl_fine_tune(record)
            and record.get("checkpoint_pct") is None
            and isinstance(layer, int)
        ):
            refs.append(SaeRef(str(cfg.parent), layer, cfg.parent.parent.name))
    return refs


# --- external sources --------------------------------------------------------------------------------


def source_layer(source: str) -> int | None:
    """The layer an SAE source reads, known without loading weights: the folder name
    (`model.layers.L`), its cfg.json (`hook_layer`, `hook_name`), or a release's sae_id (`layer_12/...`).
    An SAE with a run record (train_sae.py's) reads the layer its record names."""
    folder = Path(source).expanduser()
    record = read_record(folder) if (folder / RECORD_NAME).is_file() else None
    if record is not None and record.kind == "sae" and record.get("architecture") != "crosscoder":
        if isinstance(record.get("layer"), int):
            return record.get("layer")
    layer = layer_from_path(source)
    if layer is not None:
        return layer
    path = Path(source).expanduser()
    cfg_file = path / "cfg.json"
    if cfg_file.is_file():
        try:
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # the loader reports the corrupt file
        if not isinstance(cfg, dict):
            return None  # as corrupt: the loader reports it
        meta = cfg.get("metadata") or {}
        for value in (meta.get("hook_layer"), cfg.get("hook_layer")):
            if isinstance(value, int):
                return value
        hook = meta.get("hook_name") or cfg.get("hook_name")
        return layer_from_hook_name(hook) if isinstance(hook, str) else None
    if not path.exists() and "/" in source:
        return parse_sae_tag(source.split("/", 1)[1].replace("/", "_")).layer
    return None


def external_ref(source: str, layer: int | None) -> SaeRef:
    """An SAE given by the user (`--sae`): at `layer`, else at the layer the source says."""
    tag = source_tag(source)
    folder = Path(source).expanduser()
    if (folder / "cfg.json").is_file():  # a local SAE: its checkpoint percentage from its record
        pct = sae_record(folder).get("checkpoint_pct")
    else:
        ours = parse_our_tag(tag)
        pct = ours.pct if ours else None
    return SaeRef(source, layer if layer is not None else source_layer(source), tag, pct)


def external_run(sources: Sequence[str], layers: Sequence[int] | None) -> SaeRun:
    """One run over `--sae` sources, paired in order with `layers` (None: each SAE's own layer)."""
    if layers is not None and len(layers) != len(sources):
        if len(sources) == 1 and len(layers) > 1:
            raise ValueError(
                f"One --sae but {len(layers)} layers in --sae_layer: give one --sae per layer "
                "(--sae A --sae B) to splice several SAEs."
            )
        raise ValueError(
            f"{len(sources)} --sae sources but {len(layers)} --sae_layer layers: give one layer per SAE "
            "(in the same order), or leave --sae_layer out to use each SAE's own hook layer."
        )
    return SaeRun(
        tuple(external_ref(s, layers[i] if layers is not None else None) for i, s in enumerate(sources))
    )


def resolve_sae(model: str, sae: str | None = None, layer: int | None = None, **family) -> SaeRef:
    """The SAE an eval or analysis uses: `sae` (a source) at `layer` when given, else `find_sae`."""
    if sae:
        return external_ref(sae, layer)
    return find_sae(model, layer, **family)


def chosen_sae(args: Any) -> SaeRef:
    """The SAE an eval's SAE-choice flags (`lorasae.core.cli.SaeChoiceArgs`) name: `--sae` at `--layer`,
    else our SAE of `--architecture` at `--layer` (`find_sae`)."""
    return resolve_sae(args.model_name, args.sae, args.layer, architecture=args.architecture)


__all__ = [
    "GEMMA_SCOPE_2B",
    "GEMMA_SCOPE_9B",
    "LAYER_DIR",
    "SaeRef",
    "SaeRun",
    "check_architecture",
    "chosen_sae",
    "external_ref",
    "external_run",
    "final_saes",
    "find_sae",
    "list_our_saes",
    "model_keys",
    "our_sae_runs",
    "resolve_sae",
    "source_layer",
]
