"""The scale study (issue 30): its plan, the FLOPs prediction against an independent count, and `--quick`
end to end on the small built-in world and its half-width sibling: table, figures and records written,
and a rerun reuses every finished result."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from lorasae.scale import study
from lorasae.scale.config import PAPER_RANK_RATIO, Point, ScaleStudyConfig, plan_points, rank_for
from lorasae.scale.speed import Dims, layer_flops, predicted_costs


def test_plan_holds_the_other_quantities_at_their_base_values() -> None:
    cfg = ScaleStudyConfig(seeds=[0])
    plan = plan_points(cfg, {"tiny-s": 64, "tiny": 128})
    assert [p.rank for p in plan["rank"]] == [4, 8, 16, 32]  # 2.8 % of 128 → 4 (the paper's ratio)
    assert {p.examples for p in plan["rank"]} == {160} and {p.model for p in plan["rank"]} == {"tiny"}
    assert [p.examples for p in plan["examples"]] == [40, 160, 640, 2560]
    assert {p.rank for p in plan["examples"]} == {16}
    assert {(p.model, p.rank) for p in plan["size"]} == {
        ("tiny-s", 2),
        ("tiny-s", 8),
        ("tiny", 4),
        ("tiny", 16),
    }
    assert rank_for(PAPER_RANK_RATIO, 2304) == 64 and rank_for(0.001, 64) == 1


def test_flops_prediction_matches_a_hand_count() -> None:
    d = Dims(d_model=4, d_ff=8, n_layers=4, vocab=10, ctx=2)
    per_layer = 2 * (4 * 16 + 3 * 4 * 8) + 4 * 2 * 4  # 2·(q,k,v,o + gated MLP) + attention
    assert layer_flops(d) == per_layer
    got = predicted_costs(d, layer=1, d_sae=32, k=2)
    before, after = 2 * per_layer / 2, 2 * per_layer / 2 + 10 * 4
    sae = 6 * 4 * 32 + 6 * 2 * 4
    assert got["after_over_before"] == pytest.approx(after / before)
    assert got["e2e_over_topk"] == pytest.approx((4 * before + 6 * after + sae) / (2 * before + sae))
    deeper = predicted_costs(d, layer=0, d_sae=32, k=2)  # more after the SAE: e2e costs relatively more
    assert deeper["after_over_before"] > got["after_over_before"]
    assert deeper["e2e_over_topk"] > got["e2e_over_topk"]


def test_quick_study_runs_end_to_end_writes_its_outputs_and_resumes(
    small_world, small_world_s, out_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = [str(small_world_s), str(small_world)]
    cfg = ScaleStudyConfig(models=models, layer=0, quick=True, rank_ratios=[0.25], base_ratio=0.25)
    results = study.run_study(cfg)
    points = results["points"]
    # rank 8 (0.25 · 32) at 4 and 8 sequences on the main model; rank 4 (0.25 · 16) on its half-width sibling
    assert sorted((Path(p.model).name, p.rank, p.examples) for p in points) == [
        ("tiny", 8, 4),
        ("tiny", 8, 8),
        ("tiny-s", 4, 4),
    ]
    for r in points.values():
        assert r["L_SAE"] > r["L_base"] and math.isfinite(r["pct_gap_closed"])
        assert r["pct_gap_closed"] == pytest.approx(
            100 * (r["L_SAE"] - r["L_LoRA"]) / (r["L_SAE"] - r["L_base"])
        )
        for key in ("bench_lora", "bench_lora_sae"):
            assert 0 <= r[key]["mean"]["acc"] <= 1
        assert {"base_effect", "lora_effect", "lora_minus_base"} <= set(r["steering"])
    table = pd.read_csv(out_root / "data" / "scale_study" / "table.csv")
    assert set(table["question"]) == {"rank", "examples", "size"}
    assert table[table["question"] == "size"]["model"].nunique() == 2
    for name in ("rank", "examples", "size", "speed"):
        png = out_root / "plots" / "scale_study" / f"{name}.png"
        assert png.stat().st_size > 1000 and Path(f"{png}.run.json").is_file()
    speed = json.loads((out_root / "data" / "scale_study" / "speed.json").read_text())["rows"]
    assert len(speed) == 4 and all(r["measured"]["e2e_over_topk"] > 0 for r in speed)
    for point in points:
        assert Path(out_root / "data" / "scale_study" / "points" / f"{point.key}.json.run.json").is_file()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished result was measured again")

    monkeypatch.setattr(study, "measure_point", must_not_run)
    monkeypatch.setattr(study, "measure_model", must_not_run)
    monkeypatch.setattr(study, "measure_speed", must_not_run)
    again = study.run_study(
        ScaleStudyConfig(models=models, layer=0, quick=True, rank_ratios=[0.25], base_ratio=0.25)
    )
    assert again["points"].keys() == points.keys()
    for point, result in points.items():
        assert json.dumps(again["points"][point], sort_keys=True) == json.dumps(result, sort_keys=True)


def test_point_key_names_model_rank_examples_and_seed() -> None:
    assert Point("/a/b/tiny-s", 4, 160, 1).key == "tiny-s_r4_n160_s1"
