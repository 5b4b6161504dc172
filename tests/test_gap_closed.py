"""The fraction of the CE gap closed: one rule (`lorasae.gap`), and a run whose spliced SAE does not raise
the CE is flagged `non_positive_gap` — never printed as a percentage — in the LoRA result, its JSON and
results.csv row, its summary line and table, the report/README table, results.csv reading, the scaling
figure's table and the SAEBench comparison."""

from __future__ import annotations

import csv
import json
import math
import warnings

import numpy as np
import pytest

from lorasae.gap import (
    GAP_EPSILON,
    NO_GAP_TEXT,
    NON_POSITIVE_GAP,
    format_gap_closed,
    gap_closed,
    gap_fractions,
)
from lorasae.lora.outputs import RunId, append_result, results_row, write_curves
from lorasae.lora.trainer import LoraRunResult
from lorasae.results.table import RESULTS_COLUMNS

MODEL = "tiny"
CLOSING = LoraRunResult(L_base=2.0, L_SAE=2.5, L_LoRA=2.2, minutes=[0.0, 1.0])  # 60 % closed
NO_GAP = LoraRunResult(L_base=3.0, L_SAE=2.9, L_LoRA=2.85, minutes=[0.0, 1.0])  # the SAE lowers CE
NAIVE_NO_GAP_PCT = f"{100 * (2.9 - 2.85) / (2.9 - 3.0):.1f}"  # what the naive ratio printed: -50.0


def _run(tag: str, rank: int = 4) -> RunId:
    return RunId(MODEL, tag, (0, 1), rank, 100)


# --- the rule -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "l_base, l_sae, l_lora, fraction, flag",
    [
        (2.0, 2.5, 2.2, 0.6, None),
        (2.0, 2.5, 2.6, -0.2, None),  # the adapter made it worse: a real, negative fraction
        (2.0, 2.0, 1.9, None, NON_POSITIVE_GAP),  # no gap
        (3.0, 2.9, 2.85, None, NON_POSITIVE_GAP),  # negative gap
        (2.0, 2.0 + GAP_EPSILON / 2, 1.9, None, NON_POSITIVE_GAP),  # below the resolution of results.csv
        (2.0, 2.0 + 10 * GAP_EPSILON, 2.0, 1.0, None),
        (None, 2.5, 2.2, None, None),  # a missing CE is not flagged as "no gap"
        (2.0, float("nan"), 2.2, None, None),
    ],
)
def test_gap_rule(l_base, l_sae, l_lora, fraction, flag):
    gap = gap_closed(l_base, l_sae, l_lora)
    assert gap.flag == flag
    assert gap.fraction == (pytest.approx(fraction) if fraction is not None else None)
    vector = gap_fractions([l_base], [l_sae], [l_lora])[0]
    assert (math.isnan(vector) and fraction is None) or vector == pytest.approx(fraction)


def test_gap_fractions_agree_with_the_scalar_rule_elementwise():
    rng = np.random.default_rng(0)
    base, sae, lora = 2 + rng.random(50), 2 + rng.random(50), 2 + rng.random(50)
    vector = gap_fractions(base, sae, lora)
    for i in range(50):
        scalar = gap_closed(base[i], sae[i], lora[i])
        assert scalar.flag == (NON_POSITIVE_GAP if sae[i] - base[i] <= GAP_EPSILON else None)
        assert (scalar.fraction is None and math.isnan(vector[i])) or scalar.fraction == pytest.approx(
            vector[i]
        )
    assert np.isnan(vector).sum() == (sae - base <= 0).sum() > 0


def test_format_gap_closed():
    assert format_gap_closed(0.6) == "60.0" and format_gap_closed(0.6, percent_sign=True) == "60.0%"
    assert format_gap_closed(None, NON_POSITIVE_GAP) == NO_GAP_TEXT == "n/a (no gap)"
    assert format_gap_closed(float("nan"), NON_POSITIVE_GAP, percent_sign=True) == NO_GAP_TEXT
    assert (
        format_gap_closed(0.25, "") == "25.0" and format_gap_closed(0.25, float("nan")) == "25.0"
    )  # csv cells
    assert format_gap_closed(None) == format_gap_closed(float("nan")) == "—"


# --- train_lora's result, JSON, results.csv row, summary line and table ---------------------------------


def test_lora_result_flags_a_non_positive_gap():
    assert CLOSING.frac_gap_closed == pytest.approx(0.6) and CLOSING.gap_flag is None
    assert math.isnan(NO_GAP.frac_gap_closed) and NO_GAP.gap_flag == NON_POSITIVE_GAP
    assert NO_GAP.ce_gap == pytest.approx(-0.1) and NO_GAP.ce_improvement == pytest.approx(0.05)


def test_ce_increase_json_keeps_the_spec_keys_and_adds_the_flag(out_root):
    good = json.loads(write_curves(_run("good"), CLOSING)["CE_increase"].read_text())
    assert good == pytest.approx({"initial": 2.5, "converged": 2.2, "difference": 0.3, "base": 2.0})
    flagged = json.loads(write_curves(_run("none"), NO_GAP)["CE_increase"].read_text())
    assert flagged.pop("gap_flag") == NON_POSITIVE_GAP
    assert flagged == pytest.approx({"initial": 2.9, "converged": 2.85, "difference": 0.05, "base": 3.0})


def test_results_row_leaves_the_fraction_empty_and_sets_gap_flag(out_root):
    rows = [
        results_row(_run(t), r, ["src"], [1], 8.0, 4.0, None)
        for t, r in (("good", CLOSING), ("none", NO_GAP))
    ]
    for row in rows:
        append_result(row)
    with open(out_root / "data" / "results.csv", newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert tuple(written[0]) == RESULTS_COLUMNS
    assert float(written[0]["frac_gap_closed"]) == pytest.approx(0.6) and written[0]["gap_flag"] == ""
    assert written[1]["frac_gap_closed"] == "" and written[1]["gap_flag"] == NON_POSITIVE_GAP
    assert float(written[1]["ce_gap"]) == pytest.approx(-0.1)  # the gap itself is still recorded


def test_summary_line_and_table_print_the_flag_not_a_percentage(capsys):
    from lorasae.lora.run import RunSummary, print_table

    good = RunSummary(_run("good"), CLOSING, [1], None, {})
    none = RunSummary(_run("none"), NO_GAP, [1], None, {})
    assert "gap closed 60.0%" in good.line()
    assert f"gap closed {NO_GAP_TEXT}" in none.line() and "%" not in none.line()
    print_table([good, none], 60.0)
    out = capsys.readouterr().out
    none_row = next(line for line in out.splitlines() if line.startswith("none"))
    assert NO_GAP_TEXT in none_row and NAIVE_NO_GAP_PCT not in none_row and "nan" not in none_row
    assert "60.0" in next(line for line in out.splitlines() if line.startswith("good"))


# --- reading results.csv, the report / README table, the scaling table ------------------------------


def _write_old_style_csv(out_root) -> None:
    """results.csv as written before the rule: no gap_flag column, the naive ratio in frac_gap_closed."""
    columns = [c for c in RESULTS_COLUMNS if c != "gap_flag"]
    path = out_root / "data" / "results.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        ("good", 4, 0.06, 0.5, 2.0, 2.5, 2.2, 0.6),
        ("none", 4, 0.06, 0.5, 3.0, 2.9, 2.85, -0.5),
        ("good", 8, 0.12, 0.5, 2.0, 2.5, 2.1, 0.8),
        ("none", 8, 0.12, 0.5, 3.0, 2.9, 2.8, -1.0),
    ]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for tag, rank, width, l0, l_base, l_sae, l_lora, frac in rows:
            writer.writerow(
                {c: "" for c in columns}
                | dict(
                    model=MODEL, sae_tag=tag, sae_layers="1", lora_layers="0-3", rank=rank, num_examples=100
                )
                | dict(sae_width=width, sae_l0=l0, L_base=l_base, L_SAE=l_sae, L_LoRA=l_lora)
                | dict(ce_gap=l_sae - l_base, ce_improvement=l_sae - l_lora, frac_gap_closed=frac)
            )


def test_reading_results_csv_applies_the_rule_to_old_rows(out_root):
    from lorasae.results import load_results_csv

    _write_old_style_csv(out_root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gap_flag is derived: its absence is not "a missing column"
        df = load_results_csv(None)
    none = df[df["sae_tag"] == "none"]
    assert (none["gap_flag"] == NON_POSITIVE_GAP).all() and none["frac_gap_closed"].isna().all()
    good = df[df["sae_tag"] == "good"]
    assert (good["gap_flag"] == "").all() and good["frac_gap_closed"].tolist() == pytest.approx([0.6, 0.8])


def test_report_and_readme_tables_flag_the_run(out_root):
    from lorasae.demo_readme import results_block
    from lorasae.demo_report import Section
    from lorasae.report import results_table

    _write_old_style_csv(out_root)
    for fmt in ("simple", "github"):
        table = results_table(MODEL, fmt=fmt)
        none_rows = [line for line in table.splitlines() if "none" in line]
        assert len(none_rows) == 2 and all(NO_GAP_TEXT in line for line in none_rows)
        assert not any("-50.0" in line or "-100.0" in line or "nan" in line for line in none_rows)
        assert sum("60.0" in line or "80.0" in line for line in table.splitlines()) == 2
    block = results_block(1.0, "cpu", [Section("LoRA runs", "claim", results_table(MODEL, fmt="github"))], {})
    assert block.count(NO_GAP_TEXT) == 2


def test_scaling_table_does_not_refill_a_flagged_fraction(out_root):
    from lorasae.plotting.scaling import improvement_table
    from lorasae.results import load_results_csv

    _write_old_style_csv(out_root)
    df = load_results_csv(None)
    df["frac_gap_closed"] = np.nan  # as if the csv had no fractions at all: the table computes them
    table = improvement_table(df, "width", where={"sae_tag": "none"})
    assert len(table) == 2 and table["pct_gap_closed"].isna().all()
    assert table["ce_improvement"].tolist() == pytest.approx([0.05, 0.1])
    table = improvement_table(df, "width", where={"sae_tag": "good"})
    assert table["pct_gap_closed"].tolist() == pytest.approx([60.0, 80.0])


# --- SAEBench comparison ------------------------------------------------------------------------------


def _core(with_sae: float, without_sae: float) -> dict:
    metrics = {"ce_loss_with_sae": with_sae, "ce_loss_without_sae": without_sae, "ce_loss_score": 0.5}
    return {"eval_result_metrics": {"model_performance_preservation": metrics}}


def test_saebench_gap_closed_by_the_adapter_is_flagged_without_a_gap():
    from lorasae.saebench.comparison import comparison_table, gap_closed

    closing = {"base": {"core": _core(2.5, 2.0)}, "peft": {"core": _core(2.2, 2.01)}}
    assert gap_closed(closing)["fraction"] == pytest.approx(0.6) and gap_closed(closing)["gap_flag"] is None
    assert "CE gap closed by the adapter: 60.0%" in comparison_table(closing)
    none = {"base": {"core": _core(2.9, 3.0)}, "peft": {"core": _core(2.85, 3.01)}}
    gap = gap_closed(none)
    assert gap["fraction"] is None and gap["gap_flag"] == NON_POSITIVE_GAP
    text = comparison_table(none)
    assert f"CE gap closed by the adapter: {NO_GAP_TEXT} (L_base 3.0000, L_SAE 2.9000" in text
    assert "-50.0%" not in text


def test_results_table_is_one_order_whatever_order_the_runs_were_written_in(out_root):
    """Sweep shards append rows concurrently: the table groups by SAE (first appearance) and orders each
    SAE's runs by rank, so two demos with the same runs print the same table."""
    from lorasae.report import results_rows

    runs = [("a", 16), ("b", 1), ("a", 1), ("b", 16), ("a", 4)]
    for tag, rank in runs:
        append_result(results_row(_run(tag, rank), CLOSING, ["src"], [1], 8.0, 4.0, None))
    assert [(row[0], row[2]) for row in results_rows(MODEL)] == [
        ("a", 1),
        ("a", 4),
        ("a", 16),
        ("b", 1),
        ("b", 16),
    ]
