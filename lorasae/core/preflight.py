"""Checks run before any data loads or training starts, so that a run fails in seconds, not after hours:
output folders writable, SAE weights finite, and a clear reason for settings that cannot work.

Each check raises `PreflightError` (one message: what, which file, what to do)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from lorasae.core.errors import PreflightError


def _nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folders: Iterable[str | Path], what: str = "outputs") -> None:
    """Each folder (or the nearest ancestor that exists, where it will be created) takes a new file.
    Tried for real (a temporary file), so it also holds for root, ACLs and read-only mounts."""
    for folder in folders:
        folder = Path(folder)
        anchor = _nearest_existing(folder)
        if not anchor.is_dir():
            raise PreflightError(
                f"cannot write the {what} to {folder}: {anchor} is a file, not a folder. Move it away or "
                "point LORASAE_ROOT elsewhere."
            )
        try:
            with tempfile.TemporaryFile(dir=anchor, prefix=".lorasae-write-check."):
                pass
        except OSError as err:
            raise PreflightError(
                f"cannot write the {what} to {folder} ({anchor}: {err.strerror or err}). Make it writable "
                "or point LORASAE_ROOT elsewhere; nothing was trained."
            ) from err


def check_finite_weights(tensors: Mapping[str, torch.Tensor], where: str | Path) -> None:
    """Every floating tensor is free of NaN/inf (a diverged or corrupt SAE would waste the whole run)."""
    bad = [
        name
        for name, tensor in tensors.items()
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        raise PreflightError(
            f"the SAE {where} has NaN or infinite weights ({', '.join(sorted(bad))}): it diverged or the "
            "file is damaged. Retrain it (train_sae.py, a lower --lr) or pick another SAE."
        )


def check_sae_finite(sae: torch.nn.Module, where: str | Path) -> None:
    check_finite_weights(dict(sae.state_dict()), where)
