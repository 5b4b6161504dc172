"""The e2e speed-up metric of SPEC §3.3, computed rather than read off the timing plot.

For a target spliced CE, the speed-up is the wall time the end-to-end (e2e) SAE needs to first reach
that CE divided by the time TopK SAE + LoRA needs to reach it, where the latter is the best over the
TopK SAE's checkpoints of (SAE training minutes up to the checkpoint + LoRA training minutes on that
checkpoint until the target is reached). "Reaching" a target on a curve of evaluation points is the
first crossing at or below it, with linear interpolation of time between the two evaluation points
that bracket the crossing; a curve that never gets there gives None, and every function reports such
cases explicitly (`status`) instead of inventing a number. `speedup_table` evaluates a grid of
targets (by default evenly spaced between the CE the e2e SAE has at half of its training and the best
CE it reaches) and `compute_speedup` does all of it from the output files of one model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lorasae.results import Curve, MissingResultsError, TimingData, load_timing_data

# A checkpoint for the speed-up: (SAE training minutes up to the checkpoint, LoRA curve on it, label).
Checkpoint = tuple[float, Curve, float | None]


def time_to_reach(minutes: Sequence[float], ce: Sequence[float], target: float) -> float | None:
    """Minutes at which the curve first gets to `ce <= target`, interpolating linearly between the two
    evaluation points around the crossing; the first point's time if it already is there; None if never.
    NaN CE values are skipped."""
    t = np.asarray(minutes, dtype=float)
    y = np.asarray(ce, dtype=float)
    if t.shape != y.shape:
        raise ValueError(f"{len(t)} times but {len(y)} CE values")
    prev_t = prev_y = None
    for ti, yi in zip(t, y):
        if math.isnan(yi):
            continue
        if yi <= target:
            if prev_y is None:
                return float(ti)
            return float(prev_t + (prev_y - target) / (prev_y - yi) * (ti - prev_t))
        prev_t, prev_y = ti, yi
    return None


def curve_time_to_reach(curve: Curve, target: float) -> float | None:
    return time_to_reach(curve.minutes, curve.ce, target)


@dataclass(frozen=True)
class TopkLoraTime:
    """Best TopK + LoRA route to a target: which checkpoint, and its SAE and LoRA minutes."""

    minutes: float
    sae_minutes: float
    lora_minutes: float
    checkpoint: float | None  # the checkpoint's label (its pct), if given


def topk_lora_time(checkpoints: Sequence[Checkpoint], target: float) -> TopkLoraTime | None:
    """min over checkpoints of (SAE minutes at the checkpoint + LoRA minutes to reach `target` on that
    checkpoint's LoRA curve); None if no checkpoint's LoRA curve reaches it."""
    best: TopkLoraTime | None = None
    for sae_minutes, lora, label in checkpoints:
        lora_minutes = curve_time_to_reach(lora, target)
        if lora_minutes is None:
            continue
        total = float(sae_minutes) + lora_minutes
        if best is None or total < best.minutes:
            best = TopkLoraTime(total, float(sae_minutes), lora_minutes, label)
    return best


@dataclass(frozen=True)
class SpeedupPoint:
    """The speed-up at one target CE (minutes; None where a route never reaches the target)."""

    target_ce: float
    e2e_minutes: float | None
    topk_lora_minutes: float | None
    checkpoint_pct: float | None
    sae_minutes: float | None
    lora_minutes: float | None
    speedup: float | None
    status: str  # ok | e2e not reached | TopK+LoRA not reached | neither reached | reached at t=0


def speedup_at(e2e: Curve, checkpoints: Sequence[Checkpoint], target: float) -> SpeedupPoint:
    """e2e minutes to reach `target` / best TopK+LoRA minutes to reach it."""
    e2e_minutes = curve_time_to_reach(e2e, target)
    best = topk_lora_time(checkpoints, target)
    speedup = None
    if e2e_minutes is None and best is None:
        status = "neither reached"
    elif e2e_minutes is None:
        status = "e2e not reached"
    elif best is None:
        status = "TopK+LoRA not reached"
    elif best.minutes <= 0:
        status = "reached at t=0"
    else:
        status = "ok"
        speedup = e2e_minutes / best.minutes
    return SpeedupPoint(
        float(target),
        e2e_minutes,
        best.minutes if best else None,
        best.checkpoint if best else None,
        best.sae_minutes if best else None,
        best.lora_minutes if best else None,
        speedup,
        status,
    )


def default_targets(e2e: Curve, n: int = 8, start_fraction: float = 0.5) -> np.ndarray:
    """`n` target CEs evenly spaced from the best CE the e2e SAE has reached by `start_fraction` of its
    training down to the best CE it reaches at all (its running minimum), highest first."""
    best_so_far = np.fmin.accumulate(e2e.ce)
    start = best_so_far[min(len(best_so_far) - 1, int(math.floor(start_fraction * (len(e2e.ce) - 1))))]
    end = best_so_far[-1]
    if not np.isfinite(start) or not np.isfinite(end):
        raise ValueError("e2e curve has no finite CE values")
    return np.array([start]) if start == end else np.linspace(start, end, n)


def speedup_table(
    e2e: Curve, checkpoints: Sequence[Checkpoint], targets: Sequence[float] | None = None
) -> list[SpeedupPoint]:
    """`speedup_at` for every target (default: `default_targets(e2e)`)."""
    grid = default_targets(e2e) if targets is None else targets
    return [speedup_at(e2e, checkpoints, float(t)) for t in grid]


def timing_checkpoints(data: TimingData) -> list[Checkpoint]:
    """The checkpoints of loaded timing data in the form the speed-up functions take."""
    return [(sae_minutes, run.curve, pct) for pct, sae_minutes, run in data.checkpoints if run.curve]


def speedup_frame(points: Sequence[SpeedupPoint]) -> pd.DataFrame:
    """The table as a DataFrame, times in hours (NaN where not reached), one row per target."""
    df = pd.DataFrame([asdict(p) for p in points])
    for col in ("e2e_minutes", "topk_lora_minutes", "sae_minutes", "lora_minutes"):
        df[col.replace("minutes", "hours")] = pd.to_numeric(df.pop(col), errors="coerce") / 60.0
    df["speedup"] = pd.to_numeric(df["speedup"], errors="coerce")
    order = ["target_ce", "e2e_hours", "topk_lora_hours", "checkpoint_pct", "sae_hours", "lora_hours"]
    return df[[*order, "speedup", "status"]]


def compute_speedup(
    root: str | Path | None,
    model: str,
    *,
    targets: Sequence[float] | None = None,
    sae_tag: str | None = None,
    rank: int | None = None,
    lora_layers: str | None = None,
    num_examples: int | None = None,
) -> pd.DataFrame:
    """The speed-up table of `model` from its output files (see `results.load_timing_data` for how the
    LoRA configuration is chosen when not given). Needs the e2e SAE curve."""
    data = load_timing_data(
        root, model, sae_tag=sae_tag, rank=rank, lora_layers=lora_layers, num_examples=num_examples
    )
    if data.e2e is None:
        raise MissingResultsError(
            f"The speed-up needs the e2e SAE curve of {model!r}: run `python train_sae.py --e2e ...`"
        )
    return speedup_frame(speedup_table(data.e2e, timing_checkpoints(data), targets))
