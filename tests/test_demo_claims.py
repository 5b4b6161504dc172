"""The demo's "what it showed" bullets: generated from numbers by fixed verdict rules (expected strings
written out by hand)."""

from __future__ import annotations

from lorasae.demo.claims import (
    SCALE_STUDY_POINTER,
    benchmarks_claim,
    dark_matter_claim,
    gap_claim,
    interp_claim,
    multi_claim,
    saebench_claim,
    speedup_claim,
    steering_claim,
)


def test_gap_closed_agrees_when_positive_and_rising_with_rank():
    claim = gap_claim({1: [10.0, 20.0], 16: [30.0, 56.6]}, [30.0, 42.4])
    assert claim.bullet() == (
        "- **Gap closed** (agrees): 10–57 % of the CE gap closed over 4 runs (final SAEs at rank 16: 30–42 %); "
        "mean by rank 1: 15 %, 16: 43 %."
    )


def test_gap_closed_does_not_show_when_a_run_widens_the_gap_or_rank_does_not_help():
    assert gap_claim({1: [-5.0, 20.0], 16: [30.0]}, [30.0]).verdict == "does not show"
    assert gap_claim({1: [40.0], 16: [30.0]}, [30.0]).verdict == "does not show"
    assert (
        gap_claim({16: [30.0]}, []).bullet()
        == "- **Gap closed** (does not show): 30 % of the CE gap closed over 1 run."
    )


def test_several_saes():
    assert multi_claim("1-2", 2.6161, 29.3, [34.4, 31.7]).bullet() == (
        "- **Several SAEs at once** (agrees): SAEs at layers 1-2 together raise the CE to 2.616; one LoRA "
        "closes 29 % (each SAE alone: 34 %, 32 %)."
    )
    assert multi_claim("1-2", 2.6, -1.0, []).verdict == "does not show"
    # a small positive share reads to a tenth, not 0
    assert multi_claim("0-1", 6.28, 0.4, [3.2]).text.endswith(
        "one LoRA closes 0.4 % (each SAE alone: 3.2 %)."
    )


def test_speedup_verdict_against_the_papers_three_to_twenty():
    claim = speedup_claim([2.034, 1.673, 1.906], 2)
    assert claim.bullet().removesuffix(f" {SCALE_STUDY_POINTER}") == (
        "- **e2e speed-up** (smaller): 1.7–2.0× where TopK + LoRA reaches the e2e SAE's CE (paper: 3–20×); "
        "2 of the e2e SAE's 5 target CEs are not reached."
    )
    assert speedup_claim([3.0, 12.0], 0).verdict == "agrees"
    assert speedup_claim([0.5, 0.9], 0).verdict == "does not show"
    assert speedup_claim([], 8).text == "TopK + LoRA reaches none of the e2e SAE's target CEs."


def test_saebench_agrees_when_the_ce_with_the_sae_falls():
    assert saebench_claim(2.093, 1.920).bullet() == (
        "- **SAE-Bench** (agrees): CE with the SAE 2.093 → 1.920 on the merged model."
    )
    assert saebench_claim(2.0, 2.1).verdict == "does not show"


def test_steering_verdict_from_the_interval():
    assert steering_claim(0.5, -0.04, -0.06, -0.01, 0.9).bullet().removesuffix(f" {SCALE_STUDY_POINTER}") == (
        "- **Steering** (does not show): alpha 0.5; LoRA − base change of the positives' log-likelihood "
        "-0.04 [-0.06, -0.01] (90% interval)."
    )
    assert steering_claim(1, 0.1, 0.02, 0.2, 0.9).verdict == "agrees"
    assert steering_claim(1, 0.0, -0.1, 0.1, 0.9).verdict == "no difference"


def test_benchmarks_need_most_tasks_beyond_one_standard_error():
    rows = [("mmlu", 0.30, 0.40, 0.05), ("hellaswag", 0.50, 0.52, 0.05), ("truthful", 0.6, 0.7, None)]
    assert benchmarks_claim(rows).bullet().removesuffix(f" {SCALE_STUDY_POINTER}") == (
        "- **Benchmarks** (does not show): with the SAE spliced, LoRA − base accuracy: mmlu +0.10, "
        "hellaswag +0.02, truthful +0.10; 1 of 3 by more than one standard error."
    )
    assert benchmarks_claim([("a", 0.3, 0.4, 0.05), ("b", 0.3, 0.2, 0.05)]).verdict == "does not show"
    assert benchmarks_claim([("a", 0.3, 0.4, 0.05), ("b", 0.3, 0.4, 0.05)]).verdict == "agrees"


def test_interp_claim():
    claim = interp_claim([0.03, 0.10, 0.05], 0.006, 0.51, 0.19)
    assert claim.bullet() == (
        "- **Interpretability** (agrees): LoRA − base L2 distance to the clean activations after the SAE "
        "+0.030 … +0.100, cosine at the last layer +0.006; 51 % of tokens improve, +0.19 nats on average."
    )
    assert interp_claim([0.1], -0.01, 0.4, 0.1).verdict == "partly"
    assert interp_claim([0.1], -0.01, 0.4, -0.1).verdict == "does not show"


def test_dark_matter_claim_against_the_paper():
    claim = dark_matter_claim([0.47, 0.51], [0.72, 0.80], [0.14, 0.17])
    assert claim.bullet() == (
        "- **Dark Matter** (vector R² agrees, norm R² lower): vector R² of the error 0.47–0.51 (paper ≈ 0.5: "
        "agrees); norm R² 0.72–0.80 (paper > 0.9: lower); nonlinear FVU 0.14–0.17 over the SAEs."
    )
    assert dark_matter_claim([0.3], [0.95], [0.1]).verdict == "vector R² differs, norm R² agrees"


def test_a_claim_the_scale_study_varies_points_to_it_only_when_it_does_not_agree():
    from lorasae.demo.claims import SCALE_STUDY_POINTER, Claim

    assert Claim("Steering", "does not show", "x.").bullet().endswith(SCALE_STUDY_POINTER)
    assert Claim("e2e speed-up", "smaller", "x.").bullet().endswith(SCALE_STUDY_POINTER)
    assert SCALE_STUDY_POINTER not in Claim("Steering", "agrees", "x.").bullet()
    assert SCALE_STUDY_POINTER not in Claim("Gap closed", "does not show", "x.").bullet()
