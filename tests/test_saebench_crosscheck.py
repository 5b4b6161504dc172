"""Cross-check against SAEBench's own package (sae-bench 0.6.0, installed by `make setup` from
requirements-crosscheck.txt without its dependencies) where its code runs without TransformerLens models:
the SCR/TPP scoring and ablation, unlearning's latent selection, score, prompt, answer scoring and
known-question rule, RAVEL's completion check (with hub-style labels), core's reconstruction fields, on the
same numbers, SAE and activations. A missing `sae_bench` fails these tests (`required_libs.require`), it
does not skip them. Core's CE and KL scores need SAEBench's TransformerLens activation store and are not
compared here; its explained variance differs on purpose (docs/DEVIATIONS.md)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from required_libs import require

from lorasae.saebench import ravel, scr_tpp, unlearning
from lorasae.saebench.activations import meaned_activations

sb_scr = require("sae_bench.evals.scr_and_tpp.main")
sb_features = require("sae_bench.evals.unlearning.utils.feature_activation")
sb_unlearning = require("sae_bench.evals.unlearning.main")
sb_ravel = require("sae_bench.evals.ravel.validation")


def test_require_fails_naming_make_setup_when_a_library_is_missing():
    with pytest.raises(pytest.fail.Exception, match=r"no_such_library_xyz.*`make setup`"):
        require("no_such_library_xyz")


def _clean_and_ablated(rng: random.Random, gap: float):
    data = {"professor / nurse": "male / female", "male / female": "professor / nurse"}
    clean = {"male / female": 0.9, "professor / nurse": 0.8}
    for d in data:
        clean[f"{scr_tpp.BIASED_PROBE} probe on {d} data"] = clean[d] - gap * rng.uniform(0.5, 1.5)
    ablated = {
        a: {n: {f"{scr_tpp.BIASED_PROBE} probe on {d} data": rng.uniform(0.5, 1.0)} for n in (2, 5, 20)}
        for d, a in data.items()
    }
    return clean, ablated


@pytest.mark.parametrize("gap", [0.2, 0.0008, 0.0, -0.05])
def test_scr_scores_match_saebench(gap):
    clean, ablated = _clean_and_ablated(random.Random(int(gap * 1e4)), gap)
    ours = scr_tpp.scr_scores(ablated, clean)
    theirs = sb_scr.get_scr_plotting_dict(ablated, clean)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key


def test_tpp_scores_match_saebench():
    rng = random.Random(0)
    classes = ["a", "b", "c", "d"]
    clean = {c: rng.uniform(0.7, 1.0) for c in classes}
    ablated = {c: {n: {o: rng.uniform(0.4, 1.0) for o in classes} for n in (2, 10)} for c in classes}
    ours_overall, ours_per_class = scr_tpp.tpp_scores(ablated, clean)
    theirs_overall, theirs_per_class = sb_scr.create_tpp_plotting_dict(ablated, clean)
    assert ours_overall == pytest.approx(theirs_overall)
    for c in classes:
        assert ours_per_class[c] == pytest.approx(theirs_per_class[c])


def test_ablated_activations_match_saebench_for_a_topk_sae_with_b_dec():
    from lorasae.sae import SaeConfig, TopKSAE

    torch.manual_seed(0)
    sae = TopKSAE(SaeConfig(d_in=8, d_sae=32, k=4), fast=False)
    with torch.no_grad():
        sae.b_dec.normal_()  # encode(0) ≠ 0: masked positions matter
    acts = torch.randn(6, 9, 8)
    acts[:, 0] = 0.0
    acts[3, 6:] = 0.0
    to_ablate = torch.zeros(32, dtype=torch.bool)
    to_ablate[[0, 3, int(sae.encode(torch.zeros(1, 8))[0].argmax())]] = True
    theirs = sb_scr.ablated_precomputed_activations(acts, sae, to_ablate, 4)
    ours = scr_tpp.ablated_meaned_activations(acts, sae, to_ablate, 4)  # the default pooling: SAEBench's
    fast = scr_tpp.ablated_from_means(
        meaned_activations(acts), scr_tpp.pooled_latents_for_ablation(acts, sae, 4), sae, to_ablate
    )
    assert torch.allclose(ours, theirs.float(), atol=1e-5)
    assert torch.allclose(fast, theirs.float(), atol=1e-5)


def test_unlearning_selection_and_score_match_saebench():
    import pandas as pd

    rng = np.random.default_rng(0)
    forget = rng.random(50) * (rng.random(50) < 0.6)
    retain = rng.random(50) * 0.02
    for threshold in (0.001, 0.01):
        theirs = list(sb_features.get_top_features(forget, retain, threshold))
        ours = unlearning.top_features(torch.tensor(forget), torch.tensor(retain), threshold)
        assert ours == theirs
    rows = [
        {"medicine": rng.random(), "all_side_effects_mcq": rng.choice([0.95, 0.99, 0.995, 1.0])}
        for _ in range(12)
    ]
    frame = pd.DataFrame([{"wmdp-bio": r["medicine"], **r} for r in rows])
    assert unlearning.unlearning_score(rows) == pytest.approx(sb_unlearning.get_unlearning_scores(frame))


@pytest.mark.parametrize(
    "label,completion", [("Marstad", " Marstad is"), ("Marstad", " Mar"), ("Ost", " the"), ("Marstad", ' "M')]
)
def test_ravel_completion_check_matches_saebench(label, completion):
    assert ravel.evaluate_completion(label, completion) == sb_ravel.evaluate_completion("", label, completion)
