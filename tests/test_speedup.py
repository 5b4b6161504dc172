"""The e2e speed-up metric (SPEC §3.3) against hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lorasae.results import Curve
from lorasae.results.speedup import (
    default_targets,
    speedup_at,
    speedup_frame,
    speedup_table,
    time_to_reach,
    topk_lora_time,
)


def test_time_to_reach_interpolates_the_first_crossing():
    t, y = [0, 10, 20], [3.0, 2.0, 1.0]
    assert time_to_reach(t, y, 1.5) == pytest.approx(15.0)  # between (10, 2.0) and (20, 1.0)
    assert time_to_reach(t, y, 2.0) == pytest.approx(10.0)  # exactly on a point
    assert time_to_reach(t, y, 3.5) == 0.0  # already there before training
    assert time_to_reach(t, y, 0.5) is None  # never
    # first crossing, not the last: the curve goes back up and down again
    assert time_to_reach([0, 10, 20, 30], [3.0, 1.0, 2.5, 0.5], 2.0) == pytest.approx(5.0)
    # NaN evaluations are skipped
    assert time_to_reach([0, 10, 20], [3.0, math.nan, 1.0], 2.0) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        time_to_reach([0, 1], [1.0], 0.5)


E2E = Curve.from_lists([0, 100, 200], [3.0, 1.4, 1.0])
CHECKPOINTS = [
    (30.0, Curve.from_lists([0, 10, 20], [2.0, 1.6, 1.2]), 10.0),
    (60.0, Curve.from_lists([0, 10, 20], [1.5, 1.2, 1.0]), 20.0),
    (90.0, Curve.from_lists([0, 10, 20], [1.3, 1.0, 0.9]), 30.0),
]


def test_topk_lora_time_takes_the_best_checkpoint():
    best = topk_lora_time(CHECKPOINTS, 1.4)
    # 10%: 30 + (10 + 0.2/0.4*10) = 45; 20%: 60 + 0.1/0.3*10 = 63.3; 30%: 90 + 0 = 90
    assert best.minutes == pytest.approx(45.0)
    assert (best.checkpoint, best.sae_minutes, best.lora_minutes) == (10.0, 30.0, pytest.approx(15.0))
    best = topk_lora_time(CHECKPOINTS, 1.1)  # 10% never; 20%: 60 + 15 = 75; 30%: 90 + 6.67
    assert best.minutes == pytest.approx(75.0) and best.checkpoint == 20.0
    assert topk_lora_time(CHECKPOINTS, 0.5) is None


@pytest.mark.parametrize(
    "target, e2e_minutes, topk_minutes, pct, speedup, status",
    [
        (1.4, 100.0, 45.0, 10.0, 100 / 45, "ok"),
        (1.3, 125.0, 47.5, 10.0, 125 / 47.5, "ok"),
        (1.1, 175.0, 75.0, 20.0, 175 / 75, "ok"),
        (0.95, None, 105.0, 30.0, None, "e2e not reached"),
        (0.5, None, None, None, None, "neither reached"),
    ],
)
def test_speedup_at(target, e2e_minutes, topk_minutes, pct, speedup, status):
    p = speedup_at(E2E, CHECKPOINTS, target)
    assert p.status == status
    assert p.e2e_minutes == (pytest.approx(e2e_minutes) if e2e_minutes is not None else None)
    assert p.topk_lora_minutes == (pytest.approx(topk_minutes) if topk_minutes is not None else None)
    assert p.checkpoint_pct == pct
    assert p.speedup == (pytest.approx(speedup) if speedup is not None else None)


def test_topk_lora_not_reached_and_trivial_cases():
    e2e = Curve.from_lists([0, 100], [3.0, 0.5])
    p = speedup_at(e2e, CHECKPOINTS, 0.6)
    assert p.status == "TopK+LoRA not reached" and p.speedup is None and p.e2e_minutes is not None
    p = speedup_at(e2e, [(0.0, Curve.from_lists([0, 1], [1.0, 0.9]), None)], 3.5)
    assert p.status == "reached at t=0" and p.speedup is None


def test_default_targets_and_table():
    e2e = Curve.from_lists([0, 1, 2, 3, 4], [3.0, 2.5, 2.6, 2.0, 2.2])
    # running minimum [3, 2.5, 2.5, 2.0, 2.0]: from index floor(0.5*4)=2 (2.5) down to 2.0
    np.testing.assert_allclose(default_targets(e2e, n=3), [2.5, 2.25, 2.0])
    flat = Curve.from_lists([0, 1, 2], [3.0, 2.0, 2.0])
    np.testing.assert_allclose(default_targets(flat), [2.0])

    points = speedup_table(E2E, CHECKPOINTS, targets=[1.4, 0.5])
    df = speedup_frame(points)
    assert list(df["status"]) == ["ok", "neither reached"]
    assert df.loc[0, "e2e_hours"] == pytest.approx(100 / 60)
    assert df.loc[0, "topk_lora_hours"] == pytest.approx(45 / 60)
    assert df.loc[0, "speedup"] == pytest.approx(100 / 45)
    assert math.isnan(df.loc[1, "speedup"]) and math.isnan(df.loc[1, "e2e_hours"])
    assert len(speedup_table(E2E, CHECKPOINTS)) == 8  # default grid


def test_checkpoint_time_is_interpolated_on_the_sae_curve():
    topk = Curve.from_lists([0, 10, 30], [5.0, 3.0, 2.0])  # progress 0, 0.5, 1
    assert topk.minutes_at_progress(0.25) == pytest.approx(5.0)
    assert topk.minutes_at_progress(0.75) == pytest.approx(20.0)
    assert topk.minutes_at_progress(1.0) == pytest.approx(30.0)
