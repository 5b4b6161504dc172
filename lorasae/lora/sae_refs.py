"""Which SAEs a `train_lora.py` invocation adapts to: our own checkpoints under `saved_saes/` (one run per
checkpoint), or external sources given with `--sae` (SAELens / sparsify folders, sae-lens releases).
Each run is a tuple of `SaeRef`s, one per spliced layer, and has the SAE tag used in output paths."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lorasae.paths import root, sanitize
from lorasae.sae.sources import SaeNotFoundError

CHECKPOINT_PCTS = tuple(range(10, 101, 10))
_FAMILY = re.compile(r"^expansion_(?P<e>\d+)_L0_(?P<k>\d+)(?:-(?P<pct>\d+)pct)?$")
_LAYER_DIR = re.compile(r"^(?:model\.)?layers?[._](?P<layer>\d+)$")


def single_sae_tag(tag: str, layer: int | None, default_layer: int | None) -> str:
    """`layer_<L>__<tag>` when one SAE is spliced at a layer other than the default one and its own tag
    does not name its layer (ours: `expansion_8_L0_4`); else `tag`."""
    named = re.search(r"(?:^|[^a-z])layer_\d+", tag) is not None
    if default_layer is not None and layer is not None and layer != default_layer and not named:
        return f"layer_{layer}__{tag}"
    return tag


@dataclass(frozen=True)
class SaeRef:
    """One SAE to splice: its source (a folder or `release/sae_id`), the layer it replaces (None: the
    SAE's own hook layer), its tag in output paths, and our checkpoint percentage if it is one."""

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

    def tag(self, layers: Sequence[int] | None = None, default_layer: int | None = None) -> str:
        """The SAE tag in output paths: the SAE's own tag for one SAE; with several, the spliced layers
        are prefixed (`layers_1+2__expansion_8_L0_4-100pct`) so runs on different layer sets differ.
        One SAE spliced at a layer other than `default_layer` whose tag does not name its layer (ours:
        `expansion_8_L0_4`) gets `layer_<L>__` in front, so SAEs of one family at different layers do
        not share output files."""
        tag = self.refs[0].tag
        if len(self.refs) == 1:
            return single_sae_tag(tag, layers[0] if layers else self.refs[0].layer, default_layer)
        if layers is None:
            layers = [r.layer for r in self.refs if r.layer is not None]
        tags = {r.tag for r in self.refs}
        base = tag if len(tags) == 1 else f"{tag}+{len(tags) - 1}more"
        return f"layers_{'+'.join(str(x) for x in layers)}__{base}"

    @property
    def sources(self) -> list[str]:
        return [r.source for r in self.refs]


def source_tag(source: str) -> str:
    """Tag of an external SAE source: our folder → `expansion_<E>_L0_<k>[-<pct>pct]` (its parent folder);
    another local folder → its name (with the parent's when the name is just a layer); a release
    `release/sae_id` → the sanitized string."""
    path = Path(source).expanduser()
    if path.exists():
        path = path.resolve()
        if _LAYER_DIR.match(path.name) and path.parent.name:
            if _FAMILY.match(path.parent.name):
                return path.parent.name
            return sanitize(f"{path.parent.name}--{path.name}")
        return sanitize(path.name)
    return sanitize(source)


def layer_from_path(source: str) -> int | None:
    """`.../model.layers.12` → 12 (our and sparsify's folder names); None otherwise."""
    m = _LAYER_DIR.match(Path(source).name)
    return int(m.group("layer")) if m else None


def external_run(sources: Sequence[str], layers: Sequence[int] | None) -> SaeRun:
    """One run over `--sae` sources, paired in order with `layers` (None: each SAE's hook layer)."""
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
    refs = []
    for i, source in enumerate(sources):
        layer = layers[i] if layers is not None else layer_from_path(source)
        tag = source_tag(source)
        m = _FAMILY.match(tag)
        refs.append(SaeRef(source, layer, tag, int(m.group("pct")) if m and m.group("pct") else None))
    return SaeRun(tuple(refs))


def _model_folder(model_key: str, base: Path | None) -> Path:
    return (Path(base) if base is not None else root()) / "saved_saes" / sanitize(model_key)


def list_our_saes(model_key: str, base: Path | None = None) -> list[str]:
    """`<kind>/<tag>/model.layers.<L>` of every SAE saved for `model_key`."""
    folder = _model_folder(model_key, base)
    if not folder.is_dir():
        return []
    return sorted(str(p.parent.relative_to(folder)) for p in folder.glob("*/*/model.layers.*/cfg.json"))


def _not_found(message: str, model_key: str, base: Path | None) -> SaeNotFoundError:
    existing = list_our_saes(model_key, base)
    listing = "\n".join(f"  {s}" for s in existing) or "  (none)"
    return SaeNotFoundError(
        f"{message}\nSAEs under {_model_folder(model_key, base)}:\n{listing}\n"
        f"Train one with `python train_sae.py --model_type {model_key} --layer <L> ...`, "
        "or pass an SAE with --sae (a folder or a sae-lens release/sae_id)."
    )


def our_sae_runs(
    model_key: str,
    layers: Sequence[int],
    kind: str = "normal",
    expansion_factor: int | None = None,
    k: int | None = None,
    checkpoint_percent: int | None = None,
    base: Path | None = None,
) -> list[SaeRun]:
    """Runs over our SAEs `saved_saes/<model>/<kind>/expansion_<E>_L0_<k>[-<pct>pct]/model.layers.<L>/`.

    With `checkpoint_percent` one run on that checkpoint (100 falls back to the final SAE when no
    `-100pct` folder exists); without, one run per existing 10%…100% checkpoint, or on the final SAE when
    there are no checkpoints."""
    folder = _model_folder(model_key, base) / kind
    families: dict[tuple[int, int], dict[int | None, Path]] = {}
    if folder.is_dir():
        for tag_dir in folder.iterdir():
            m = _FAMILY.match(tag_dir.name)
            if not m or not all(
                (tag_dir / f"model.layers.{layer}" / "cfg.json").exists() for layer in layers
            ):
                continue
            key = (int(m.group("e")), int(m.group("k")))
            if (expansion_factor is None or key[0] == expansion_factor) and (k is None or key[1] == k):
                pct = int(m.group("pct")) if m.group("pct") else None
                families.setdefault(key, {})[pct] = tag_dir
    layer_text = ",".join(str(x) for x in layers)
    wanted = "".join(
        f" {name} {value}" for name, value in (("expansion", expansion_factor), ("k", k)) if value is not None
    )
    if not families:
        raise _not_found(
            f"No {kind} SAE{wanted} of model {model_key!r} at layer(s) {layer_text}.", model_key, base
        )
    if len(families) > 1:
        names = ", ".join(f"expansion_{e}_L0_{kk}" for e, kk in sorted(families))
        raise _not_found(
            f"Several {kind} SAE families at layer(s) {layer_text} ({names}): choose one with "
            "--expansion_factor and --k.",
            model_key,
            base,
        )
    (expansion, k_found), by_pct = next(iter(families.items()))
    if checkpoint_percent is not None:
        if checkpoint_percent in by_pct:
            chosen = [checkpoint_percent]
        elif checkpoint_percent == 100 and None in by_pct:
            chosen = [None]
        else:
            have = sorted(p for p in by_pct if p is not None)
            raise _not_found(
                f"No {checkpoint_percent}% checkpoint of expansion_{expansion}_L0_{k_found} at layer(s) "
                f"{layer_text} (checkpoints: {', '.join(f'{p}%' for p in have) or 'none'}).",
                model_key,
                base,
            )
    else:
        chosen = sorted(p for p in by_pct if p is not None) or [None]
    runs = []
    for pct in chosen:
        tag_dir = by_pct[pct]
        refs = tuple(
            SaeRef(str(tag_dir / f"model.layers.{layer}"), layer, tag_dir.name, pct) for layer in layers
        )
        runs.append(SaeRun(refs))
    return runs
