"""A validation curve (`Curve`: cumulative minutes, spliced CE; point i at training progress i/(len-1)) and
the SAE training curves `data/TopK/{time,val_loss}/<model>/<kind>_SAE.json` (`load_sae_curve`)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lorasae.results.files import _read_json, topk_dir

SAE_KINDS = ("normal", "e2e")


@dataclass(frozen=True)
class Curve:
    """A validation curve: cumulative training minutes (first 0) and spliced CE (first = before training)."""

    minutes: np.ndarray
    ce: np.ndarray

    def __post_init__(self) -> None:
        if len(self.minutes) != len(self.ce):
            raise ValueError(f"curve has {len(self.minutes)} times but {len(self.ce)} CE values")
        if len(self.ce) == 0:
            raise ValueError("empty curve")

    @classmethod
    def from_lists(cls, minutes: Sequence[float], ce: Sequence[float]) -> Curve:
        return cls(np.asarray(minutes, dtype=float), np.asarray(ce, dtype=float))

    def __len__(self) -> int:
        return len(self.ce)

    @property
    def hours(self) -> np.ndarray:
        return self.minutes / 60.0

    @property
    def progress(self) -> np.ndarray:
        """Training-progress fraction of each point: i/(len-1)."""
        n = len(self.ce)
        return np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)

    def minutes_at_progress(self, fraction: float) -> float:
        """Cumulative training minutes at a progress fraction (linear interpolation between points)."""
        return float(np.interp(fraction, self.progress, self.minutes))

    def ce_at_progress(self, fraction: float) -> float:
        return float(np.interp(fraction, self.progress, self.ce))


def _paired_curve(minutes: Sequence[float], ce: Sequence[float], where: str) -> Curve:
    if len(minutes) != len(ce):
        n = min(len(minutes), len(ce))
        warnings.warn(
            f"{where}: {len(minutes)} time points but {len(ce)} CE values; using the first {n}",
            stacklevel=3,
        )
        minutes, ce = minutes[:n], ce[:n]
    return Curve.from_lists(minutes, ce)


def load_sae_curve(root: str | Path | None, model: str, kind: str) -> Curve:
    """The SAE training curve `data/TopK/{time,val_loss}/<model>/<kind>_SAE.json` (kind: normal/e2e)."""
    if kind not in SAE_KINDS:
        raise ValueError(f"SAE kind must be one of {SAE_KINDS}, got {kind!r}")
    how = f"`python train_sae.py --model_type {model}{' --e2e' if kind == 'e2e' else ''}`"
    ce = _read_json(topk_dir(root, "val_loss", model) / f"{kind}_SAE.json", f"{kind} SAE CE curve", how)
    minutes = _read_json(topk_dir(root, "time", model) / f"{kind}_SAE.json", f"{kind} SAE time curve", how)
    return _paired_curve(minutes, ce, f"{kind} SAE curve of {model}")
