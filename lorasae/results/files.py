"""Where the output files are (the output root, `data/TopK/<quantity>/<model>`) and reading one of them:
a missing file raises `MissingResultsError` (a `FileNotFoundError`) naming the path and the command that
writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasae.core import paths
from lorasae.core.atomic import read_output_json
from lorasae.core.errors import LorasaeError
from lorasae.core.paths import sanitize


class MissingResultsError(LorasaeError, FileNotFoundError):
    """An output file or folder the figures need does not exist (message says which and why)."""


def default_root() -> Path:
    """`$LORASAE_ROOT` if set, else the repository root (see `lorasae.core.paths.root`)."""
    return paths.root()


def resolve_root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else default_root()


def topk_dir(root: str | Path | None, quantity: str, model: str) -> Path:
    """`<root>/data/TopK/<quantity>/<model>` (quantity: `val_loss`, `time`, `CE_increase`)."""
    return resolve_root(root) / "data" / "TopK" / quantity / sanitize(model)


def _available(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def read_result_file(path: Path, what: str, how: str) -> Any:
    """An output the readers need (`what`, written by `how`): missing → `MissingResultsError` listing the
    folder's files; otherwise `read_output_json` (corrupt → `CorruptFileError`)."""
    if not path.is_file():
        siblings = _available(path.parent)
        hint = f" Files there: {siblings}." if siblings else f" ({path.parent} does not exist.)"
        raise MissingResultsError(f"No {what} at {path}.{hint} It is written by {how}.")
    return read_output_json(path, how)
