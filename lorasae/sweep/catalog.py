"""Which SAEs a sweep can draw on: Gemma Scope (from sae-lens's directory of pretrained SAEs, offline) or
this project's own `saved_saes/` folders. Each SAE is one `SaeEntry`: where it is, its layer, width and L0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lorasae.core import paths
from lorasae.model.load import model_key, model_shape
from lorasae.store.tags import expand_width  # one rule for `16k` → 16384 everywhere


@dataclass(frozen=True)
class SaeEntry:
    model: str
    """Model the SAE belongs to (a registry key, hub id or folder, as train_lora.py's --model takes)."""
    source: str
    """What train_lora.py's --sae takes: `release/sae_id` or a folder."""
    layer: int
    width: int
    l0: float
    canonical: bool = False
    """Gemma Scope's canonical SAE for its layer and width (the L0 closest to 100)."""


@dataclass(frozen=True)
class ScopeModel:
    release: str
    n_layers: int
    layer: int
    """The layer of this model's default SAE (the paper's)."""
    width: int
    """The width of this model's default SAE (the paper's)."""
    l0: float
    """The L0 of this model's default SAE (the paper's)."""


# the SAEs SPEC §2 names: layer_12/width_16k/average_l0_82 (2B), layer_20/width_131k/average_l0_62 (9B)
GEMMA_SCOPE: dict[str, ScopeModel] = {
    "gemma": ScopeModel("gemma-scope-2b-pt-res", 26, 12, 16384, 82),
    "gemma-9b": ScopeModel("gemma-scope-9b-pt-res", 42, 20, 131072, 62),
}

_SCOPE_ID = re.compile(r"^layer_(\d+)/width_(\d+)([km]?)/average_l0_(\d+)$")


class Catalog:
    """The SAEs of one model, with lookups by layer and width."""

    def __init__(self, model: str, n_layers: int, entries: Iterable[SaeEntry]):
        self.model, self.n_layers = model, n_layers
        self.entries = sorted(entries, key=lambda e: (e.layer, e.width, e.l0))
        if not self.entries:
            raise LookupError(f"No SAEs found for model {model!r}.")

    def at(self, layer: int | None = None, width: int | None = None) -> list[SaeEntry]:
        return [
            e
            for e in self.entries
            if (layer is None or e.layer == layer) and (width is None or e.width == width)
        ]

    def layers(self, width: int | None = None) -> list[int]:
        return sorted({e.layer for e in self.at(width=width)})

    def widths(self, layer: int | None = None) -> list[int]:
        return sorted({e.width for e in self.at(layer=layer)})

    def pick(
        self, layer: int, width: int, l0: float | None = None, near: float | None = None
    ) -> SaeEntry | None:
        """The SAE at (layer, width): the one with L0 closest to `l0`; without `l0`, the canonical one,
        else the one with L0 closest to `near`, else the middle L0. None if there is none."""
        found = self.at(layer, width)
        if not found:
            return None
        canonical = [e for e in found if e.canonical]
        if l0 is None and canonical:
            return canonical[0]
        target = l0 if l0 is not None else near
        if target is not None:
            return min(found, key=lambda e: (abs(e.l0 - target), e.l0))
        return found[(len(found) - 1) // 2]


def gemma_scope_catalog(model: str) -> Catalog:
    """Every residual-stream Gemma Scope SAE of `model` (`gemma` or `gemma-9b`), from sae-lens's
    bundled directory (no network)."""
    if model not in GEMMA_SCOPE:
        raise LookupError(
            f"Gemma Scope has residual SAEs for {sorted(GEMMA_SCOPE)}, not {model!r}; "
            "use --catalog ours for SAEs trained with train_sae.py."
        )
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    scope = GEMMA_SCOPE[model]
    directory = get_pretrained_saes_directory()
    canonical_release = directory.get(f"{scope.release}-canonical")
    canonical = set(canonical_release.saes_map.values()) if canonical_release else set()
    entries = []
    for sae_id in directory[scope.release].saes_map:
        m = _SCOPE_ID.match(sae_id)
        if m:
            entries.append(
                SaeEntry(
                    model=model,
                    source=f"{scope.release}/{sae_id}",
                    layer=int(m.group(1)),
                    width=expand_width(int(m.group(2)), m.group(3)),
                    l0=float(m.group(4)),
                    canonical=sae_id in canonical,
                )
            )
    return Catalog(model, scope.n_layers, entries)


def our_catalog(model: str, kind: str = "normal", n_layers: int | None = None) -> Catalog:
    """The final (100 %) SAEs that train_sae.py saved for `model` under saved_saes/<model>/<kind>/."""
    from lorasae.store import final_saes

    entries = []
    for ref in final_saes(model, kind):
        cfg = json.loads((Path(ref.source) / "cfg.json").read_text())
        k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
        entries.append(SaeEntry(model, ref.source, int(ref.layer), int(cfg["d_sae"]), float(k or 0)))
    if not entries:
        folder = paths.root() / "saved_saes" / paths.sanitize(model_key(model)) / kind
        raise LookupError(
            f"No SAEs under {folder}: train some with train_sae.py (e.g. --k 2, --k 8, --layer 2) first."
        )
    return Catalog(model, n_layers if n_layers is not None else model_shape(model).n_layers, entries)


def load_catalog(kind: str, model: str) -> Catalog:
    """`gemma-scope` or `ours` (the normal TopK SAEs of saved_saes/)."""
    if kind == "gemma-scope":
        return gemma_scope_catalog(model)
    if kind == "ours":
        return our_catalog(model)
    raise ValueError(f"--catalog must be 'gemma-scope' or 'ours', got {kind!r}")
