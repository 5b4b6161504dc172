"""The fraction of the CE gap closed: one rule (`lorasae.core.gap`), and a run whose spliced SAE does not raise
the CE is flagged `non_positive_gap` — never printed as a percentage — in the LoRA result, its JSON and
results.csv row, its summary line and table, the report/README table, results.csv reading, the scaling
figure's table and the SAEBench comparison. A positive gap below two standard errors of its own
measurement (paired per-chunk CE differences on the validation tokens) is flagged `gap_within_noise` in
the same places."""

from __future__ import annotations

import csv
import itertools
import json
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import VOCAB, make_tiny_model

from lorasae.core.gap import (
    GAP_EPSILON,
    GAP_WITHIN_NOISE,
    NO_GAP_TEXT,
    NOISY_GAP_TEXT,
    NON_POSITIVE_GAP,
    format_gap_closed,
    gap_closed,
    gap_fractions,
    paired_gap_se,
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
    from lorasae.demo.readme import results_block
    from lorasae.demo.sections import Section
    from lorasae.results.summary import results_table

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
    from lorasae.results.summary import results_rows

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


# --- a gap within its measurement noise ---------------------------------------------------------------

# the issue's case: on real text the SAE raised the CE by 0.011 nats and the run printed "gap closed
# −31.4 %"; on a few thousand noisy validation tokens that gap is about one standard error
NOISY = LoraRunResult(L_base=3.2, L_SAE=3.211, L_LoRA=3.21445, minutes=[0.0, 1.0], gap_se=0.009)
NAIVE_NOISY_PCT = f"{100 * (3.211 - 3.21445) / 0.011:.1f}"  # -31.4
DEMO = LoraRunResult(L_base=1.48, L_SAE=2.03, L_LoRA=1.79, minutes=[0.0, 1.0], gap_se=0.012)


def test_paired_gap_se_is_the_standard_error_of_the_per_chunk_differences():
    rng = np.random.default_rng(0)
    n, t = 40, 64
    base = rng.normal(3.0, 0.4, n) * t  # per-chunk CE sums, equal token counts
    sae = base + rng.normal(0.05, 0.1, n) * t
    counts = np.full(n, t)
    per_chunk = (sae - base) / t  # with equal counts: the SE of the mean of per-chunk mean differences
    expected = per_chunk.std(ddof=1) / np.sqrt(n)
    assert paired_gap_se(base, counts, sae, counts) == pytest.approx(expected, rel=1e-12)
    # unequal counts (masked LM, --positions): the ratio estimator's SE, written out with a loop
    counts = rng.integers(5, 20, n)
    gap = (sae - base).sum() / counts.sum()
    total = sum(((sae[i] - base[i]) - gap * counts[i]) ** 2 for i in range(n))
    expected = math.sqrt(total * n / (n - 1)) / counts.sum()
    assert paired_gap_se(base, counts, sae, counts) == pytest.approx(expected, rel=1e-12)
    # and against a bootstrap over chunks (an independent estimate of the same spread)
    picks = rng.integers(0, n, (4000, n))
    boot = (sae - base)[picks].sum(1) / counts[picks].sum(1)
    assert paired_gap_se(base, counts, sae, counts) == pytest.approx(boot.std(), rel=0.1)
    assert math.isnan(paired_gap_se(base[:1], counts[:1], sae[:1], counts[:1]))
    with pytest.raises(ValueError, match="same chunks"):
        paired_gap_se(base, counts, sae, counts + 1)


@pytest.mark.parametrize(
    "l_base, l_sae, gap_se, flag",
    [
        (3.2, 3.211, 0.009, GAP_WITHIN_NOISE),  # 0.011 nats, 1.2 standard errors
        (3.2, 3.211, 0.005, None),  # 2.2 standard errors: a gap
        (1.48, 1.78, 0.012, None),  # the demo's gaps (0.3 … 1.5 nats) are many standard errors
        (1.48, 2.98, 0.05, None),
        (3.0, 2.9, 0.2, NON_POSITIVE_GAP),  # no gap comes first
        (3.2, 3.211, None, None),  # no noise estimate (an older results.csv row): only the sign rule
        (3.2, 3.211, float("nan"), None),
    ],
)
def test_gap_within_two_standard_errors_is_flagged(l_base, l_sae, gap_se, flag):
    gap = gap_closed(l_base, l_sae, l_sae - 0.001, gap_se)
    assert gap.flag == flag and (gap.fraction is None) == (flag is not None)
    vector = gap_fractions([l_base], [l_sae], [l_sae - 0.001], [np.nan if gap_se is None else gap_se])[0]
    assert math.isnan(vector) == (flag is not None)
    assert format_gap_closed(None, GAP_WITHIN_NOISE) == NOISY_GAP_TEXT == "n/a (gap within noise)"


def test_noisy_gap_is_flagged_in_the_result_json_row_line_and_table(out_root, capsys):
    from lorasae.lora.run import RunSummary, print_table

    assert NOISY.gap_flag == GAP_WITHIN_NOISE and math.isnan(NOISY.frac_gap_closed)
    assert DEMO.gap_flag is None and DEMO.frac_gap_closed == pytest.approx(0.24 / 0.55)
    assert (
        json.loads(write_curves(_run("noisy"), NOISY)["CE_increase"].read_text())["gap_flag"]
        == GAP_WITHIN_NOISE
    )
    for tag, r in (("noisy", NOISY), ("demo", DEMO)):
        append_result(results_row(_run(tag), r, ["src"], [1], 8.0, 4.0, None))
    with open(out_root / "data" / "results.csv", newline="", encoding="utf-8") as handle:
        written = {row["sae_tag"]: row for row in csv.DictReader(handle)}
    assert written["noisy"]["gap_flag"] == GAP_WITHIN_NOISE and written["noisy"]["frac_gap_closed"] == ""
    assert float(written["noisy"]["gap_se"]) == pytest.approx(0.009) and written["demo"]["gap_flag"] == ""
    line = RunSummary(_run("noisy"), NOISY, [1], None, {}).line()
    assert f"gap closed {NOISY_GAP_TEXT}" in line and NAIVE_NOISY_PCT not in line
    print_table([RunSummary(_run("noisy"), NOISY, [1], None, {})], 60.0)
    assert NOISY_GAP_TEXT in capsys.readouterr().out


def test_reading_results_csv_and_the_report_flag_a_noisy_gap(out_root):
    from lorasae.results import load_results_csv
    from lorasae.results.summary import results_table

    _write_old_style_csv(out_root)  # older rows without gap_se: only the sign rule applies to them
    append_result(results_row(_run("noisy"), NOISY, ["src"], [1], 8.0, 4.0, None))
    df = load_results_csv(None)
    noisy = df[df["sae_tag"] == "noisy"].iloc[0]
    assert noisy["gap_flag"] == GAP_WITHIN_NOISE and math.isnan(noisy["frac_gap_closed"])
    assert (df[df["sae_tag"] == "good"]["gap_flag"] == "").all() and df["gap_se"].isna().sum() == 4
    table = results_table(MODEL)
    noisy_line = next(line for line in table.splitlines() if line.startswith("noisy"))
    assert NOISY_GAP_TEXT in noisy_line and NAIVE_NOISY_PCT not in noisy_line


def test_reading_a_results_csv_written_before_the_gap_se_column(out_root):
    from lorasae.results import load_results_csv

    columns = [c for c in RESULTS_COLUMNS if c not in ("gap_flag", "gap_se")]
    path = out_root / "data" / "results.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        row = dict(model=MODEL, sae_tag="old", sae_layers="1", lora_layers="0-3", rank=4, num_examples=100)
        writer.writerow({c: "" for c in columns} | row | dict(L_base=3.2, L_SAE=3.211, L_LoRA=3.21445))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gap_se is new: its absence is not "a missing column"
        df = load_results_csv(None)
    assert df["gap_se"].isna().all() and (df["gap_flag"] == "").all()


def test_saebench_comparison_flags_a_gap_within_the_core_evals_noise():
    from lorasae.saebench.comparison import comparison_table
    from lorasae.saebench.comparison import gap_closed as saebench_gap_closed

    noisy = {"base": {"core": _core(3.211, 3.2)}, "peft": {"core": _core(3.21445, 3.201)}}
    noisy["base"]["core"]["eval_result_unstructured"] = {"ce_loss_gap_stderr": 0.009}
    assert saebench_gap_closed(noisy)["gap_flag"] == GAP_WITHIN_NOISE
    assert f"CE gap closed by the adapter: {NOISY_GAP_TEXT}" in comparison_table(noisy)
    noisy["base"]["core"]["eval_result_unstructured"] = {"ce_loss_gap_stderr": 0.001}
    assert saebench_gap_closed(noisy)["gap_flag"] is None


def _noise_splice(scale: float):
    """Adds `scale` × fixed random noise to layer 1's output (a stand-in for an SAE's reconstruction error)."""

    def build(_ids):
        def fn(h):
            g = torch.Generator().manual_seed(0)
            return h + scale * torch.randn(h.shape, generator=g).to(h.dtype) * h.std()

        return {1: fn}

    return build


def _confident_model():
    """The tiny random Llama with its logits scaled up, so that its own greedy text has a low CE that a
    perturbed residual stream raises (a random model is near-uniform on everything)."""
    torch.manual_seed(0)
    model = make_tiny_model("llama")
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    return model


@torch.no_grad()
def _greedy_text(prompts: torch.Tensor, length: int) -> torch.Tensor:
    model = _confident_model()
    ids = prompts
    while ids.shape[1] < length:
        logits = model(input_ids=ids, use_cache=False).logits[:, -1]
        noisy = logits + 5 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(ids.shape[1]))
        ids = torch.cat([ids, noisy.argmax(-1, keepdim=True)], 1)
    return ids


def test_train_lora_measures_the_gap_noise_on_the_validation_chunks():
    """train_lora's L_SAE − L_base carries a paired standard error from the validation chunks: a splice
    that barely perturbs the model gives a gap within noise (flagged), a strong one a gap far outside."""
    from lorasae.lora.adapters import attach_lora
    from lorasae.lora.trainer import TrainSettings, train_lora
    from lorasae.model.ce import ce_per_chunk

    g = torch.Generator().manual_seed(1)
    val = _greedy_text(torch.randint(4, VOCAB, (24, 1), generator=g), 32)
    batches = itertools.cycle([torch.randint(4, VOCAB, (2, 32), generator=g) for _ in range(2)])
    settings = TrainSettings(
        num_train_examples=2, batch_size=2, lr=1e-4, eval_every=2, val_batch_size=8, progress=False
    )
    results = {}
    for scale in (0.002, 3.0):
        model = attach_lora(_confident_model(), [2], rank=2)
        results[scale] = train_lora(model, _noise_splice(scale), batches, val, settings)
        with model.disable_adapter():  # the SE from an independent per-chunk pass
            base, counts = ce_per_chunk(model, val, 8)
            sae, _ = ce_per_chunk(model, val, 8, _noise_splice(scale))
        assert results[scale].gap_se == pytest.approx(paired_gap_se(base, counts, sae, counts), rel=1e-6)
        assert results[scale].L_SAE - results[scale].L_base == pytest.approx(
            float((sae - base).sum() / counts.sum()), abs=1e-6
        )
    weak, strong = results[0.002], results[3.0]
    assert abs(weak.ce_gap) < 2 * weak.gap_se and weak.gap_flag in (GAP_WITHIN_NOISE, NON_POSITIVE_GAP)
    assert strong.ce_gap > 2 * strong.gap_se and strong.gap_flag is None


def test_demo_multi_sae_table_prints_the_flag_of_a_noisy_gap(out_root):
    from lorasae.demo.sections import _multi_sae

    joint = RunId(MODEL, "joint", (2, 3), 4, 100)
    append_result(results_row(joint, DEMO, ["a", "b"], [0, 1], 8.0, 4.0, None))
    append_result(results_row(RunId(MODEL, "alone", (2, 3), 4, 100), NOISY, ["b"], [1], 8.0, 4.0, None))
    table = _multi_sae(MODEL, "simple")
    assert f"{100 * DEMO.frac_gap_closed:.1f}" in next(
        line for line in table.splitlines() if "SAE@0+1" in line
    )
    alone = next(line for line in table.splitlines() if "SAE@1 " in line)
    assert NOISY_GAP_TEXT in alone and "nan" not in alone and NAIVE_NOISY_PCT not in alone
