"""sweep.py's manifests: which SAEs each sweep of a model used (`data/sweeps/<model>[__<variant>].json`,
one per settings variant), and the one that a reader takes (`lorasae.core.result_choice.pick_result`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasae.core import paths
from lorasae.core.records import RECORD_SUFFIX
from lorasae.core.result_choice import Found, found, pick_result
from lorasae.results.files import read_result_file, resolve_root


def sweep_manifests(root: str | Path | None, model: str) -> list[Found]:
    """Every sweep manifest of `model` with its run record (not the shard configs beside them); a manifest
    whose record predates variants has the variant its name says."""
    default = paths.sweep_manifest(model, resolve_root(root))
    stem = default.name.removesuffix(".json")
    candidates = [default, *sorted(default.parent.glob(f"{stem}__*.json"))]
    skip = (RECORD_SUFFIX, paths.SWEEP_CONFIG_SUFFIX)
    return [
        found(p, p.name.removesuffix(".json").removeprefix(stem).removeprefix("__"))
        for p in candidates
        if p.is_file() and not p.name.endswith(skip)
    ]


def find_sweep_manifest(root: str | Path | None, model: str, variant: str | None = None) -> Found | None:
    """The manifest of `model` a reader uses: with `variant`, that sweep's (None if it has none); else by
    `pick_result`'s rule (the default settings, else the newest, saying which); None when sweep.py has not
    run for `model`."""
    return pick_result(sweep_manifests(root, model), f"sweep manifest of {model}", variant)


def load_sweep_manifest(
    root: str | Path | None, model: str, variant: str | None = None
) -> dict[str, Any] | None:
    """sweep.py's record of which SAEs each sweep of `model` used (`find_sweep_manifest`'s), or None."""
    chosen = find_sweep_manifest(root, model, variant)
    if chosen is None:
        return None
    return read_result_file(chosen.path, "sweep manifest", "sweep.py")
