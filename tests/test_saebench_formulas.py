"""SAEBench formulas of lorasae.saebench, each checked against an independent computation on
constructed data (numpy / explicit loops / hand-computed values)."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
import torch

from lorasae.saebench import absorption as ab
from lorasae.saebench import (
    absorption_probes,
    absorption_prompts,
    core,
    probing,
    schema,
    scr_tpp,
    scr_tpp_ablation,
    scr_tpp_metrics,
)
from lorasae.saebench import autointerp as ai
from lorasae.saebench.activations import keep_mask, meaned_activations, sae_meaned_activations, tokenize_texts


class DiagSae:
    """A linear 'SAE' with known weights: encode = relu(x @ E + b), decode = z @ W_dec + b_dec."""

    def __init__(self, enc: torch.Tensor, w_dec: torch.Tensor, b_enc: torch.Tensor | None = None):
        self.enc = enc  # [d_in, d_sae]
        self.W_dec = w_dec  # [d_sae, d_in]
        self.b_enc = b_enc if b_enc is not None else torch.zeros(w_dec.shape[0])
        self.b_dec = torch.zeros(w_dec.shape[1])
        self.cfg = {"d_in": w_dec.shape[1], "d_sae": w_dec.shape[0]}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.enc + self.b_enc)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec


# --- core ----------------------------------------------------------------------------------------


def test_loss_scores_by_hand():
    assert core.ce_loss_score(ce_clean=2.0, ce_sae=2.5, ce_zero_ablation=7.0) == pytest.approx(4.5 / 5.0)
    assert core.ce_loss_score(2.0, 2.0, 7.0) == 1.0
    assert core.ce_loss_score(2.0, 7.0, 7.0) == 0.0
    assert core.kl_div_score(kl_sae=0.2, kl_zero_ablation=4.0) == pytest.approx(0.95)


def test_per_token_ce_and_kl_against_numpy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    other = torch.randn(2, 5, 7, generator=g)
    tokens = torch.randint(0, 7, (2, 5), generator=g)
    ce = core.per_token_ce(logits, tokens)
    lg = logits.double().numpy()
    for b in range(2):
        for t in range(4):
            row = lg[b, t]
            expected = -(row[tokens[b, t + 1]] - math.log(np.exp(row).sum()))
            assert ce[b, t].item() == pytest.approx(expected, rel=1e-5)
    kl = core.per_token_kl(logits, other)
    p = np.exp(lg) / np.exp(lg).sum(-1, keepdims=True)
    q = np.exp(other.double().numpy()) / np.exp(other.double().numpy()).sum(-1, keepdims=True)
    assert kl.numpy() == pytest.approx((p * np.log(p / q)).sum(-1), rel=1e-5)
    assert core.per_token_kl(logits, logits).abs().max() < 1e-6


def test_explained_variance_is_around_the_mean():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 6, generator=g) + 10.0  # a large mean: variance around zero would be ~100x too big
    x_hat = x + 0.3 * torch.randn(200, 6, generator=g)
    xn, xhn = x.double().numpy(), x_hat.double().numpy()
    expected = 1 - ((xn - xhn) ** 2).sum() / ((xn - xn.mean(0)) ** 2).sum()
    assert core.explained_variance(x, x_hat) == pytest.approx(expected, rel=1e-9)
    acc = core.ExplainedVarianceAccumulator()
    for i in range(0, 200, 37):
        acc.add(x[i : i + 37], x_hat[i : i + 37])
    assert acc.compute() == pytest.approx(expected, rel=1e-9)
    # predicting the mean explains nothing; perfect reconstruction explains everything
    assert core.explained_variance(x, x.mean(0).expand_as(x)) == pytest.approx(0.0, abs=1e-9)
    assert core.explained_variance(x, x) == 1.0
    legacy = core.explained_variance_legacy(x, x_hat).double().numpy()
    per_token = 1 - ((xn - xhn) ** 2).sum(-1) / ((xn - xn.mean(0)) ** 2).sum(-1)
    assert legacy == pytest.approx(per_token, rel=1e-4)


def test_cosine_density_and_max_cosine():
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    x_hat = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert core.cosine_similarity_rows(x, x_hat).tolist() == pytest.approx([1.0, 1 / math.sqrt(2)])
    density = torch.tensor([0.0, 0.0, 0.005, 0.02, 0.5])
    m = core.density_metrics(density, dense_threshold=0.1)
    assert m["frac_alive"] == pytest.approx(0.6) and m["frac_dead"] == pytest.approx(0.4)
    assert m["frac_dense"] == pytest.approx(0.2)
    assert m["freq_over_1_percent"] == pytest.approx(0.4) and m["freq_over_10_percent"] == pytest.approx(0.2)
    assert m["normalized_freq_over_1_percent"] == pytest.approx(0.52 / 0.525)
    vecs = torch.randn(9, 4, generator=torch.Generator().manual_seed(2))
    unit = vecs / vecs.norm(dim=-1, keepdim=True)
    sims = (unit @ unit.T).numpy()
    np.fill_diagonal(sims, -np.inf)
    assert core.max_cosine_sim(vecs, chunk=4).numpy() == pytest.approx(sims.max(1), rel=1e-5)


def test_encoder_matrix_layouts():
    w_dec = torch.randn(5, 3)
    sae = DiagSae(torch.randn(3, 5), w_dec)
    sae.W_enc = sae.enc  # SAELens layout [d_in, d_sae]
    assert torch.equal(core.encoder_matrix(sae), sae.enc.T)


# --- pooling and probing -------------------------------------------------------------------------


def test_meaned_activations_skip_masked_positions(char_tokenizer):
    tokens = tokenize_texts(["ab", "abcd"], char_tokenizer, 6)
    assert tokens[0].tolist()[:3] == [
        char_tokenizer.bos_token_id,
        *char_tokenizer("ab", add_special_tokens=False)["input_ids"],
    ]
    keep = keep_mask(tokens, char_tokenizer)
    assert keep.tolist() == [[False, True, True, False, False, False], [False, True, True, True, True, False]]
    acts = torch.randn(2, 6, 3) * keep[..., None]
    expected = torch.stack([acts[0, 1:3].mean(0), acts[1, 1:5].mean(0)])
    assert torch.allclose(meaned_activations(acts), expected)
    sae = DiagSae(torch.eye(3), torch.eye(3))
    latents = torch.relu(acts)
    expected_latents = torch.stack([latents[0, 1:3].mean(0), latents[1, 1:5].mean(0)])
    assert torch.allclose(sae_meaned_activations(acts, sae, batch_size=1), expected_latents)


def test_top_k_mean_diff_and_probe_data():
    g = torch.Generator().manual_seed(3)
    labels = torch.tensor([1] * 50 + [0] * 50)
    acts = torch.randn(100, 8, generator=g) * 0.1
    acts[:50, 5] += 3.0  # the most different column
    acts[50:, 2] += 2.0  # the second (negative difference counts by magnitude)
    acts[:50, 7] += 1.0
    assert probing.top_k_mean_diff(acts, labels, 3).tolist() == [5, 2, 7]
    by_class = {"a": torch.zeros(6, 2), "b": torch.ones(4, 2), "c": 2 * torch.ones(4, 2)}
    x, y = probing.prepare_probe_data(by_class, "a", torch.Generator().manual_seed(0))
    assert len(x) == 12 and int(y.sum()) == 6
    assert (x[y == 1] == 0).all() and set(x[y == 0][:, 0].tolist()) == {1.0, 2.0}  # negatives from both
    paired = probing.prepare_probe_data(by_class, "b", torch.Generator().manual_seed(0), {"b": "c"})
    assert (paired[0][paired[1] == 0] == 2).all()


def test_probes_separate_separable_data():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(80, 5, generator=g)
    y = (x[:, 0] > 0).long()
    _, acc = probing.train_sklearn_probe(x[:60], y[:60], x[60:], y[60:])
    assert acc >= 0.9
    _, acc_t = probing.train_torch_probe(x[:60], y[:60], x[60:], y[60:], epochs=50, lr=0.05, batch_size=16)
    assert acc_t >= 0.9


# --- SCR / TPP ------------------------------------------------------------------------------------


def test_scr_score_by_hand():
    clean = {
        "male / female": 0.95,
        "professor / nurse": 0.90,
        "male_professor / female_nurse probe on professor / nurse data": 0.70,
        "male_professor / female_nurse probe on male / female data": 0.80,
    }
    ablated = {
        "male / female": {2: {"male_professor / female_nurse probe on professor / nurse data": 0.80}},
        "professor / nurse": {2: {"male_professor / female_nurse probe on male / female data": 0.85}},
    }
    scores = scr_tpp_metrics.scr_scores(ablated, clean)
    assert scores["scr_dir1_threshold_2"] == pytest.approx((0.80 - 0.70) / (0.90 - 0.70))
    assert scores["scr_dir2_threshold_2"] == pytest.approx((0.85 - 0.80) / (0.95 - 0.80))
    # the biased probe is worse on profession data (0.70 < 0.80): the metric uses dir1
    assert scores["scr_metric_threshold_2"] == scores["scr_dir1_threshold_2"]


def test_scr_scores_zero_below_saebench_gap_threshold_and_averages_it_in():
    # SAEBench: a clean − biased gap below 0.001 (negative ones included) scores 0, not ±(tiny gap)⁻¹
    assert scr_tpp_metrics.scr_score(0.80, 0.70, 0.90) == pytest.approx(0.5)
    assert scr_tpp_metrics.scr_score(0.80, 0.70, 0.7009) == 0.0  # gap 0.0009
    assert scr_tpp_metrics.scr_score(0.80, 0.70, 0.70) == 0.0
    assert scr_tpp_metrics.scr_score(0.80, 0.70, 0.60) == 0.0  # negative gap: would flip the sign
    assert scr_tpp_metrics.scr_score(0.7015, 0.70, 0.7020) == pytest.approx(0.75)  # gap 0.002 still divides
    clean = {
        "male / female": 0.95,
        "professor / nurse": 0.70,  # no better than the biased probe: dir1 has no gap
        "male_professor / female_nurse probe on professor / nurse data": 0.70,
        "male_professor / female_nurse probe on male / female data": 0.80,
    }
    ablated = {
        "male / female": {2: {"male_professor / female_nurse probe on professor / nurse data": 0.80}},
        "professor / nurse": {2: {"male_professor / female_nurse probe on male / female data": 0.85}},
    }
    run_a = scr_tpp_metrics.scr_scores(ablated, clean)
    assert run_a["scr_dir1_threshold_2"] == 0.0 and run_a["scr_metric_threshold_2"] == 0.0
    run_b = {"scr_dir1_threshold_2": 0.6, "scr_dir2_threshold_2": 0.2, "scr_metric_threshold_2": 0.6}
    averaged = scr_tpp_metrics.average_over_runs({"a": run_a, "b": run_b})
    assert averaged["scr_metric_threshold_2"] == pytest.approx((0.0 + 0.6) / 2)  # the 0 counts
    assert averaged["scr_dir2_threshold_2"] == pytest.approx(((0.85 - 0.80) / (0.95 - 0.80) + 0.2) / 2)


def test_tpp_score_by_hand():
    clean = {"a": 0.9, "b": 0.8, "c": 0.7}
    ablated = {
        "a": {5: {"a": 0.6, "b": 0.75, "c": 0.7}},
        "b": {5: {"a": 0.9, "b": 0.8, "c": 0.6}},
        "c": {5: {"a": 0.8, "b": 0.8, "c": 0.5}},
    }
    overall, per_class = scr_tpp_metrics.tpp_scores(ablated, clean)
    assert per_class["a"]["tpp_threshold_5_intended_diff_only"] == pytest.approx(0.3)
    assert per_class["a"]["tpp_threshold_5_unintended_diff_only"] == pytest.approx(0.025)
    assert per_class["a"]["tpp_threshold_5_total_metric"] == pytest.approx(0.275)
    totals = [0.275, 0.0 - 0.05, 0.2 - 0.05]
    assert overall["tpp_threshold_5_total_metric"] == pytest.approx(np.mean(totals))


def test_node_effects_selection_and_ablation():
    # latent i reads dimension i; the probe weighs dimensions (1, -2, 0); positives have dim 0 high,
    # negatives dim 1 high; positions 0 are masked (all zero)
    sae = DiagSae(torch.eye(3), torch.eye(3))
    pos = torch.zeros(4, 3, 3)
    pos[:, 1:, 0] = 2.0
    neg = torch.zeros(4, 3, 3)
    neg[:, 1:, 1] = 1.0
    probe = probing.Probe(3)
    with torch.no_grad():
        probe.net.weight.copy_(torch.tensor([[1.0, -2.0, 0.0]]))
    acts = {"p": pos, "n": neg}
    tpp_effects = scr_tpp_ablation.node_effects(
        sae, probe, "p", acts, perform_scr=False, sae_batch_size=3, seed=0
    )
    # mean diff (2, -1, 0), clamped at 0 → (2, 0, 0); times probe·W_dec (1, -2, 0)
    assert tpp_effects.tolist() == pytest.approx([2.0, 0.0, 0.0])
    scr_acts = {"male / female": pos, "female_data_only": neg}  # SCR pairs each class with its counterpart
    scr_effects = scr_tpp_ablation.node_effects(
        sae, probe, "male / female", scr_acts, True, sae_batch_size=3, seed=0
    )
    assert scr_effects.tolist() == pytest.approx([2.0, 2.0, 0.0])  # |(2, -1, 0) * (1, -2, 0)|
    top2 = scr_tpp_ablation.select_top_n(torch.tensor([0.5, 0.0, 2.0, 1.0]), 2)
    assert top2.tolist() == [False, False, True, True]
    assert scr_tpp_ablation.select_top_n(torch.tensor([0.5, 0.0, 0.0]), 2).tolist() == [True, False, False]
    # ablating nothing keeps the mean-pooled residual (the SAE error is added back)
    lossy = DiagSae(torch.eye(3), 0.5 * torch.eye(3))
    none = torch.zeros(3, dtype=torch.bool)
    assert torch.allclose(
        scr_tpp_ablation.ablated_meaned_activations(pos, lossy, none, 2), meaned_activations(pos)
    )
    only0 = torch.tensor([True, False, False])
    expected = meaned_activations(pos) - 0.5 * meaned_activations(torch.relu(pos)) * torch.tensor([1.0, 0, 0])
    assert torch.allclose(scr_tpp_ablation.ablated_meaned_activations(pos, lossy, only0, 2), expected)


def test_ablation_pools_masked_positions_as_saebench():
    # encode(x) = relu(x + 1) per dimension, so encode(0) = (1, 1) ≠ 0; decode = identity
    sae = DiagSae(torch.eye(2), torch.eye(2), b_enc=torch.ones(2))
    acts = torch.tensor([[[0.0, 0.0], [2.0, 0.5], [1.0, 3.0], [0.0, 0.0]]])  # positions 0 and 3 masked
    only0 = torch.tensor([True, False])
    # unmasked positions: x' = x − f(x)_0 e_0 = ((2, .5) − (3, 0)) and ((1, 3) − (2, 0)), mean over 2
    unmasked = torch.tensor([[(-1.0 + -1.0) / 2, (0.5 + 3.0) / 2]])
    # SAEBench also sums the masked positions, where x' = 0 − f(0)_0 e_0 = (−1, 0), still over 2
    saebench = unmasked + torch.tensor([[2 * -1.0 / 2, 0.0]])
    got = scr_tpp_ablation.ablated_meaned_activations(acts, sae, only0, 1)
    assert torch.allclose(got, saebench)
    assert torch.allclose(
        scr_tpp_ablation.ablated_meaned_activations(acts, sae, only0, 1, pooling="unmasked"), unmasked
    )
    assert scr_tpp.ScrAndTppEvalConfig().ablation_pooling == "saebench"
    with pytest.raises(ValueError, match="pooling"):
        scr_tpp_ablation.ablated_meaned_activations(acts, sae, only0, 1, pooling="mean")


@pytest.mark.parametrize("pooling", scr_tpp_ablation.ABLATION_POOLING)
def test_ablation_from_means_equals_ablating_every_position(pooling):
    from lorasae.sae import SaeConfig, TopKSAE

    torch.manual_seed(0)
    sae = TopKSAE(SaeConfig(d_in=6, d_sae=24, k=3))
    with torch.no_grad():
        sae.b_dec.normal_()  # encode(0) = TopK(W_enc(0 − b_dec) + b_enc) ≠ 0
    assert (sae.encode(torch.zeros(1, 6)) != 0).any()
    acts = torch.randn(5, 7, 6)
    acts[:, 0] = 0.0  # masked positions (BOS) are zero
    acts[2, 5:] = 0.0
    f_zero = sae.encode(torch.zeros(1, 6))[0]
    mask = torch.zeros(24, dtype=torch.bool)
    mask[[1, 4, 9, 17]] = True
    mask[int(f_zero.argmax())] = True  # a latent that f(0) activates: the two poolings differ
    direct = scr_tpp_ablation.ablated_meaned_activations(acts, sae, mask, sae_batch_size=2, pooling=pooling)
    latents = scr_tpp_ablation.pooled_latents_for_ablation(acts, sae, 3, pooling)
    fast = scr_tpp_ablation.ablated_from_means(meaned_activations(acts), latents, sae, mask)
    assert torch.allclose(direct, fast, atol=1e-5)
    other = "unmasked" if pooling == "saebench" else "saebench"
    assert not torch.allclose(
        direct, scr_tpp_ablation.ablated_meaned_activations(acts, sae, mask, 2, pooling=other)
    )


# --- absorption ----------------------------------------------------------------------------------


def test_first_letter_prompts_and_vocab(char_tokenizer):
    assert absorption_prompts.first_letter(" apple") == " A" and absorption_prompts.letter_index("Zoo") == 25
    before, full = absorption_prompts.icl_prompt(
        "cat", ["dog", "cat", "emu"], random.Random(0), "{word} has the first letter:", 2
    )
    assert full.endswith("\ncat has the first letter:") and before.endswith("\n")
    assert "cat has the first letter: C" not in full  # the word is never its own example
    assert {"dog has the first letter: D", "emu has the first letter: E"} <= set(full.split("\n"))
    vocab = absorption_prompts.alpha_tokens(char_tokenizer)
    assert len(vocab) == 52 and "a" in vocab and "Z" in vocab and "1" not in vocab


def test_feature_splits_follow_f1_jumps():
    feats = {1: [7], 2: [7, 3], 3: [7, 3, 9], 4: [7, 3, 9, 1]}
    assert absorption_probes.feature_splits({1: 0.5, 2: 0.6, 3: 0.61, 4: 0.9}, feats, 0.03) == [7, 3]
    assert absorption_probes.feature_splits({1: 0.5, 2: 0.51, 3: 0.9, 4: 0.9}, feats, 0.03) == [7]


def test_word_absorption_cases():
    probe = torch.tensor([1.0, 0.0, 0.0])
    cos = torch.tensor([1.0, 0.9, 0.05, 0.0])  # latent 0: main, 1: aligned absorber, 2: weak, 3: off
    act = torch.tensor([2.0, 0.0, 0.0])
    # main latent carries the projection: no absorption
    r = ab.word_absorption(act, torch.tensor([2.0, 0.0, 0.0, 1.0]), probe, cos, [0])
    assert r.absorption_fraction == 0.0 and not r.is_full_absorption
    # main latent silent, an aligned latent carries it: full absorption, fraction 1
    r = ab.word_absorption(act, torch.tensor([0.0, 2.0, 0.0, 0.0]), probe, cos, [0])
    assert r.absorption_fraction == 1.0 and r.is_full_absorption and r.top_feature == 1
    # partial: main carries 0.5 of 2.0, absorber 1.0 * 0.9 = 0.9 → absorbed = min(0.9, 1.5) = 0.9
    r = ab.word_absorption(act, torch.tensor([0.5, 1.0, 0.0, 0.0]), probe, cos, [0])
    assert r.absorption_fraction == pytest.approx(0.9 / (0.9 + 0.5)) and not r.is_full_absorption
    # the only other active latent is barely aligned (cos < 0.1): not counted as absorbing
    r = ab.word_absorption(act, torch.tensor([0.0, 0.0, 30.0, 0.0]), probe, cos, [0])
    assert r.absorption_fraction == 0.0 and r.is_full_absorption  # full uses the looser 0.025 threshold


# --- autointerp ----------------------------------------------------------------------------------


def test_window_indexing():
    x = torch.zeros(2, 12)
    x[0, 5], x[0, 6], x[1, 3], x[0, 10] = 9.0, 8.0, 7.0, 6.0
    idx = ai.get_k_largest_indices(x, k=3, buffer=2, no_overlap=True)
    assert idx.tolist()[:2] == [[0, 5], [1, 3]]  # (0, 6) overlaps (0, 5) and is skipped
    assert all(2 <= c < 10 for _, c in idx.tolist())  # col 10 is inside the right buffer
    windows = ai.index_with_buffer(torch.arange(24).reshape(2, 12), torch.tensor([[0, 5], [1, 3]]), 2)
    assert windows.tolist() == [[3, 4, 5, 6, 7], [13, 14, 15, 16, 17]]
    iw = ai.get_iw_sample_indices(x, k=2, buffer=2, generator=torch.Generator().manual_seed(0))
    assert {tuple(r) for r in iw.tolist()} <= {(0, 5), (0, 6), (1, 3)}


def test_prediction_parsing_and_scoring():
    assert ai.parse_predictions("1, 3 and 5.") == [1, 3, 5]
    assert ai.parse_predictions("None") == []
    assert ai.parse_predictions("the first one") is None
    assert ai.parse_explanation("This neuron activates on cooking words.") == "cooking words"
    exs = [
        ai.Example(["a", "b"], [0.0, 2.0], 1.0),
        ai.Example(["c"], [0.5], 1.0),
        ai.Example(["d"], [3.0], 1.0),
    ]
    assert [e.is_active for e in exs] == [True, False, True]
    assert exs[0].to_str(mark_toks=True) == "a<<b>>"
    assert ai.score_predictions([1, 2], exs) == pytest.approx(1 / 3)
    assert ai.score_predictions([1, 3], exs) == 1.0


# --- schema --------------------------------------------------------------------------------------


def test_schema_fields_and_json_values():
    out = schema.eval_output(
        "core",
        {"a": 1},
        {"cat": {"m": float("nan"), "t": torch.tensor(2.5)}},
        [{"i": np.int64(3)}],
        None,
        "id",
    )
    schema.validate_eval_output(out)
    assert set(schema.REQUIRED_KEYS) <= set(out)
    assert out["eval_result_metrics"]["cat"] == {"m": None, "t": 2.5}
    assert out["eval_result_details"] == [{"i": 3}]
    with pytest.raises(ValueError, match="missing"):
        schema.validate_eval_output({k: v for k, v in out.items() if k != "sae_cfg_dict"})


# --- dataset selection ---------------------------------------------------------------------------


def _bios_frame() -> Any:
    import pandas as pd

    rows = []
    for prof, gender, n in [(0, 0, 12), (0, 1, 5), (1, 0, 6), (1, 1, 11), (2, 0, 2), (2, 1, 9)]:
        rows += [{"text": f"p{prof} g{gender} #{i}", "profession": prof, "gender": gender} for i in range(n)]
    return pd.DataFrame(rows)


def test_balanced_selection_by_column2():
    from lorasae.saebench.datasets import balanced_by_column2

    data = balanced_by_column2(_bios_frame(), "text", "profession", "gender", per_quadrant=4, seed=0)
    assert set(data) == {"0", "1"}  # profession 2 has only 2 male rows
    for prof, texts in data.items():
        assert len(texts) == 8 and len(set(texts)) == 8
        assert sum(t.startswith(f"p{prof} g0") for t in texts) == 4  # 4 per gender


def test_spurious_correlation_sets():
    from lorasae.saebench.datasets import max_scr_per_quadrant, spurious_corr_data

    df = _bios_frame()
    assert (
        max_scr_per_quadrant(df, "profession", "gender", (0, 1), (0, 1)) == 5
    )  # min(6, 5, 12 // 2, 11 // 2)
    sets = spurious_corr_data(df, "text", "profession", "gender", (0, 1), (0, 1), per_quadrant=3, seed=0)
    assert set(sets) == set(scr_tpp_ablation.PAIRED_CLASS_KEYS) | set(
        scr_tpp_ablation.PAIRED_CLASS_KEYS.values()
    )
    assert all(len(v) == 6 for v in sets.values())
    # the biased pair: first-column-first-value × first gender vs the opposite corner only
    assert all(t.startswith("p0 g0") for t in sets["male_professor / female_nurse"])
    assert all(t.startswith("p1 g1") for t in sets["female_nurse_data_only"])
    # the gender sets mix both professions, the profession sets both genders
    assert {t[:2] for t in sets["male / female"]} == {"p0", "p1"} and all(
        " g0" in t for t in sets["male / female"]
    )
    assert {t[3:5] for t in sets["nurse_data_only"]} == {"g0", "g1"} and all(
        t.startswith("p1") for t in sets["nurse_data_only"]
    )
    with pytest.raises(ValueError, match="too few rows"):
        spurious_corr_data(df, "text", "profession", "gender", (0, 1), (0, 1), per_quadrant=6, seed=0)


def test_hub_selection_on_stand_in_tables(monkeypatch):
    """The hub loaders' selection logic (bias-in-bios class sets, Amazon sentiment, SCR pairs) on tables
    shaped like SAEBench's datasets (the download itself needs the network)."""
    import pandas as pd

    from lorasae.saebench import datasets as data
    from lorasae.saebench import hub_datasets as hub

    def frames(name: str):
        rows = []
        if name == "LabHC/bias_in_bios":
            for prof in range(28):
                for gender in (0, 1):
                    rows += [
                        {"hard_text": f"bio {prof} {gender} {i}", "profession": prof, "gender": gender}
                        for i in range(12)
                    ]
        else:
            for cat in range(34):
                for rating in (1.0, 5.0):
                    rows += [
                        {"text": f"review {cat} {rating} {i}", "category": cat, "rating": rating}
                        for i in range(12)
                    ]
        df = pd.DataFrame(rows)
        return df, df.copy()

    monkeypatch.setattr(hub, "_hub_frames", frames)
    train, test = hub.hub_probing_dataset("LabHC/bias_in_bios_class_set1", 40, 20, seed=0)
    assert list(train) == ["0", "1", "2", "6", "9"] and list(test) == list(train)
    assert all(len(v) == 20 for v in train.values()) and all(len(v) == 10 for v in test.values())
    assert sum(t.startswith("bio 6 1") for t in train["6"]) == 10  # balanced by gender
    train, _ = hub.hub_probing_dataset("canrager/amazon_reviews_mcauley_1and5_sentiment", 16, 8, seed=0)
    assert list(train) == ["1.0", "5.0"] and all(len(v) == 8 for v in train.values())
    runs = hub.hub_scr_runs("LabHC/bias_in_bios_class_set1", 16, 8, seed=0)
    assert list(runs) == [
        f"LabHC/bias_in_bios_class_set1_scr_{a}_{b}"
        for a, b in data.SCR_COLUMN1_VALS["LabHC/bias_in_bios_class_set1"]
    ]
    professor, nurse = data.PROFESSIONS.index("professor"), data.PROFESSIONS.index("nurse")
    biased = runs["LabHC/bias_in_bios_class_set1_scr_professor_nurse"][0]["male_professor / female_nurse"]
    assert len(biased) == 8 and all(t.startswith(f"bio {professor} 0") for t in biased)
    assert all(
        t.startswith(f"bio {nurse} 1")
        for t in runs["LabHC/bias_in_bios_class_set1_scr_professor_nurse"][0]["female_nurse_data_only"]
    )
    with pytest.raises(ValueError, match="unsupported"):
        hub.hub_probing_dataset("codeparrot/github-code", 16, 8, seed=0)
