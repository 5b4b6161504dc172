"""A validation curve (`Curve`: cumulative minutes, spliced CE; point i at training progress i/(len-1)) and
the SAE training curves (`load_sae_curve`): `data/TopK/{time,val_loss}/<model>/<kind>_SAE.json` for the
model's default SAE, `<kind>_<tag>__layer_<L>_SAE.json` for any other (`paths.sae_curve_path`). The
curve of a named SAE is found through the curve files' run records, never by guessing from the name."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lorasae.core.records import RECORD_SUFFIX, read_record
from lorasae.results.files import MissingResultsError, read_result_file, topk_dir

SAE_KINDS = ("normal", "e2e")


@dataclass(frozen=True)
class Curve:
    """A validation curve: cumulative training minutes (first 0) and spliced CE (first = before training),
    and the files it was read from (for the run records of the figures drawn from it)."""

    minutes: np.ndarray
    ce: np.ndarray
    files: tuple[Path, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if len(self.minutes) != len(self.ce):
            raise ValueError(f"curve has {len(self.minutes)} times but {len(self.ce)} CE values")
        if len(self.ce) == 0:
            raise ValueError("empty curve")

    @classmethod
    def from_lists(cls, minutes: Sequence[float], ce: Sequence[float], files: Sequence[Path] = ()) -> Curve:
        return cls(np.asarray(minutes, dtype=float), np.asarray(ce, dtype=float), tuple(files))

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


def _paired_curve(
    minutes: Sequence[float], ce: Sequence[float], where: str, files: Sequence[Path] = ()
) -> Curve:
    if len(minutes) != len(ce):
        n = min(len(minutes), len(ce))
        warnings.warn(
            f"{where}: {len(minutes)} time points but {len(ce)} CE values; using the first {n}",
            stacklevel=3,
        )
        minutes, ce = minutes[:n], ce[:n]
    return Curve.from_lists(minutes, ce, files)


_LAYER_PREFIX = re.compile(r"^layer_(?P<layer>\d+)__(?P<tag>.+)$")


def sae_curve_file(
    root: str | Path | None, model: str, kind: str, quantity: str, sae_tag: str | None = None
) -> Path:
    """The curve file of `quantity` of one SAE: the default SAE's (`<kind>_SAE.json`) when `sae_tag` is
    None, else the file whose run record names an SAE with that tag (a LoRA run's SAE tag: `layer_<L>__`
    in front for an SAE off the default layer). A legacy default curve without a record is taken as it
    is (nothing says which SAE it belongs to)."""
    folder = topk_dir(root, quantity, model)
    default = folder / f"{kind}_SAE.json"
    if sae_tag is None:
        return default
    m = _LAYER_PREFIX.match(sae_tag)
    tag, layer = (m["tag"], int(m["layer"])) if m else (sae_tag, None)
    tag = re.sub(r"-\d+(?:\.\d+)?pct$", "", tag)
    found = []
    for path in sorted(folder.glob(f"{kind}_*{RECORD_SUFFIX}")) if folder.is_dir() else ():
        curve = path.with_name(path.name.removesuffix(RECORD_SUFFIX))
        record = read_record(curve)
        extra = record.extra if record is not None and record.kind == "sae_curve" else {}
        if extra.get("tag") == tag and extra.get("kind") == kind:
            if layer is None or extra.get("layer") == layer:
                found.append((bool(extra.get("default")), curve))
    if found:
        defaults = [curve for is_default, curve in found if is_default]
        if m is None and defaults:
            return defaults[0]  # no layer prefix: the LoRA runs used the SAE at the default layer
        if len(found) == 1:
            return found[0][1]
        names = ", ".join(curve.name for _, curve in found)
        raise MissingResultsError(
            f"Several {kind} SAE curves of {sae_tag} under {folder} ({names}): name the layer "
            f"(layer_<L>__{tag})."
        )
    if default.is_file() and read_record(default) is None:
        return default
    raise MissingResultsError(
        f"No {kind} SAE curve of {sae_tag} under {folder} (no curve record names it). It is written by "
        f"`python train_sae.py --model_type {model}{' --e2e' if kind == 'e2e' else ''}` with that SAE's "
        "--layer/--expansion_factor/--k."
    )


def load_sae_curve(root: str | Path | None, model: str, kind: str, sae_tag: str | None = None) -> Curve:
    """The training curve of one SAE (kind: normal/e2e): the model's default SAE's, or with `sae_tag`
    the curve of the SAE with that tag (`sae_curve_file`)."""
    if kind not in SAE_KINDS:
        raise ValueError(f"SAE kind must be one of {SAE_KINDS}, got {kind!r}")
    how = f"`python train_sae.py --model_type {model}{' --e2e' if kind == 'e2e' else ''}`"
    ce_file = sae_curve_file(root, model, kind, "val_loss", sae_tag)
    time_file = sae_curve_file(root, model, kind, "time", sae_tag)
    ce = read_result_file(ce_file, f"{kind} SAE CE curve", how)
    minutes = read_result_file(time_file, f"{kind} SAE time curve", how)
    return _paired_curve(minutes, ce, f"{kind} SAE curve {ce_file.name} of {model}", (ce_file, time_file))
