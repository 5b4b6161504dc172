"""sweep.py's manifest: which SAEs each sweep of a model used (`data/sweeps/<model>.json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasae.core import paths
from lorasae.results.files import read_result_file, resolve_root


def load_sweep_manifest(root: str | Path | None, model: str) -> dict[str, Any] | None:
    """sweep.py's record of which SAEs each sweep of `model` used (`data/sweeps/<model>.json`), or None."""
    path = paths.sweep_manifest(model, resolve_root(root))
    if not path.is_file():
        return None
    return read_result_file(path, "sweep manifest", "sweep.py")
