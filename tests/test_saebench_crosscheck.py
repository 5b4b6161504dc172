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

from lorasae.saebench import ravel, scr_tpp_ablation, scr_tpp_metrics, unlearning
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
        clean[f"{scr_tpp_metrics.BIASED_PROBE} probe on {d} data"] = clean[d] - gap * rng.uniform(0.5, 1.5)
    ablated = {
        a: {
            n: {f"{scr_tpp_metrics.BIASED_PROBE} probe on {d} data": rng.uniform(0.5, 1.0)}
            for n in (2, 5, 20)
        }
        for d, a in data.items()
    }
    return clean, ablated


@pytest.mark.parametrize("gap", [0.2, 0.0008, 0.0, -0.05])
def test_scr_scores_match_saebench(gap):
    clean, ablated = _clean_and_ablated(random.Random(int(gap * 1e4)), gap)
    ours = scr_tpp_metrics.scr_scores(ablated, clean)
    theirs = sb_scr.get_scr_plotting_dict(ablated, clean)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key


def test_tpp_scores_match_saebench():
    rng = random.Random(0)
    classes = ["a", "b", "c", "d"]
    clean = {c: rng.uniform(0.7, 1.0) for c in classes}
    ablated = {c: {n: {o: rng.uniform(0.4, 1.0) for o in classes} for n in (2, 10)} for c in classes}
    ours_overall, ours_per_class = scr_tpp_metrics.tpp_scores(ablated, clean)
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
    # the default pooling: SAEBench's
    ours = scr_tpp_ablation.ablated_meaned_activations(acts, sae, to_ablate, 4)
    fast = scr_tpp_ablation.ablated_from_means(
        meaned_activations(acts), scr_tpp_ablation.pooled_latents_for_ablation(acts, sae, 4), sae, to_ablate
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


RAVEL_TEXTS = [
    "Paris is a city in the country of",
    "The official language of Bern is",
    "Seoul is on the continent of",
    "The latitude of Oslo is",
    "The coordinates of Oslo are",
    "Tokyo's time zone is UTC",
    "The capital of Veloria is",
]
RAVEL_LABELS = [
    "Marstad", "Ost", "United States", "United Kingdom", "South Korea", "North America", "Mandarin Chinese",
    "German,French", "German, French, Italian", "59.91", "-10.75", "Asia/Tokyo", "Asia/Kolkata",
    "America/New_York", "Europe/Paris", "Africa/Cairo", "Not/AZone", "",
]  # fmt: skip
RAVEL_COMPLETIONS = [
    " Marstad is", " Mar", " the", ' "M', ' Marstad" is', " the United States of America", " United States",
    " The United States", " England, which", " Korea, officially", " south korea", " NA", " America.",
    " the Americas", " Chinese", " Mandarin", " French and", " mostly french", " 61 degrees", " 57.5 north",
    " east", "+9", "+09:00", "-15", "+5:30", "-5", "-04:00", "+1", "+02:00", "+13", "", " ",
]  # fmt: skip


def test_ravel_completion_check_matches_saebench_on_hub_style_labels():
    """Every (prompt, label, completion) of the grid: countries with articles, parts for wholes,
    abbreviations, languages named by their country or listed with commas, coordinates, time zones
    (SAEBench's verdict follows today's date: both sides read the clock) and the built-in world's names."""
    disagreements = [
        (text, label, completion)
        for text in RAVEL_TEXTS
        for label in RAVEL_LABELS
        for completion in RAVEL_COMPLETIONS
        if ravel.evaluate_completion(text, label, completion)
        != sb_ravel.evaluate_completion(text, label, completion)
    ]
    assert disagreements == []
    verdicts = [
        sb_ravel.evaluate_completion(t, lab, c)
        for t in RAVEL_TEXTS
        for lab in RAVEL_LABELS
        for c in RAVEL_COMPLETIONS
    ]
    assert 50 < sum(verdicts) < len(verdicts) - 50  # both verdicts occur often: the grid is not one-sided


# --- unlearning: SAEBench's prompt, letter scoring and known-question rule -----------------------

sb_metrics = require("sae_bench.evals.unlearning.utils.metrics")
sb_var = require("sae_bench.evals.unlearning.utils.var")

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\n'"
    " + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
"""Gemma-2-it's chat template, reduced to what a single user turn renders."""
PIECES = r"\s?\w+|\s?[^\w\s]|\s"
MCQ = [
    ("wmdp-bio", "Which germ makes the cold?", ("a virus", "a fungus", "a worm", "a metal"), 0),
    ("wmdp-bio", "Where are genes kept?", ("in salt", "in DNA", "in fat", "in air"), 1),
    ("human_aging", "What greys with age?", ("teeth", "nails", "hair", "bones"), 2),
    ("high_school_geography", "Which is a river?", ("Alps", "Sahara", "Gobi", "Nile"), 3),
]


def _sb_prompt(subject: str, question: str, choices: tuple[str, ...], order) -> str:
    pre = (
        sb_var.PRE_WMDP_BIO
        if subject == "wmdp-bio"
        else sb_var.PRE_QUESTION_FORMAT.format(subject=subject.replace("_", " "))
    )
    return sb_metrics.convert_wmdp_data_to_prompt(
        question,
        list(choices),
        prompt_format="GEMMA_INST_FORMAT",
        permute_choices=list(order),
        pre_question=pre,
    )


def _word_tokenizer(texts: list[str], chat_template: str | None):
    """A word-level tokenizer over the pieces of `texts` (a leading space or newline stays on its word, so
    "A" and " A" are distinct single tokens, as in Gemma's vocabulary), with "<bos>" as a special token."""
    import re

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = sorted({p for t in texts for part in t.split("<bos>") for p in re.findall(PIECES, part)})
    vocab = {w: i for i, w in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", *pieces])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES), behavior="isolated")
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    out.chat_template = chat_template
    return out


class _LensLike:
    """What SAEBench's `get_output_probs_abcd` uses of a HookedTransformer, over a Hugging Face model."""

    def __init__(self, model, tokenizer):
        from types import SimpleNamespace

        self.model, self.tokenizer = model, tokenizer
        self.cfg = SimpleNamespace(model_name="gemma-2-2b-it", device="cpu")

    def to_tokens(self, text, prepend_bos: bool = True, padding_side: str = "right"):
        assert not prepend_bos and padding_side == "right"
        rows = [
            self.tokenizer(t, add_special_tokens=False)["input_ids"]
            for t in ([text] if isinstance(text, str) else text)
        ]
        width = max(map(len, rows))
        return torch.tensor([r + [self.tokenizer.pad_token_id] * (width - len(r)) for r in rows])

    def __call__(self, tokens, return_type: str = "logits"):
        return self.model(input_ids=tokens, use_cache=False).logits


@pytest.fixture(scope="module")
def mcq_setup():
    from conftest import make_tiny_model

    from lorasae.saebench.world_tasks import ClozeQuestion

    texts = [_sb_prompt(*q[:3], o) for q in MCQ for o in sb_metrics.all_permutations]
    texts += ["A", "B", "C", "D", " A", " B", " C", " D"]
    tok = _word_tokenizer(texts, GEMMA_CHAT_TEMPLATE)
    questions = [ClozeQuestion(*q) for q in MCQ]
    models = [make_tiny_model("gemma2", n_layers=2, vocab=len(tok), seed=s) for s in range(2)]
    return tok, questions, models


def test_unlearning_prompt_ids_are_saebench_prompts_with_and_without_a_chat_template(mcq_setup):
    tok, questions, _ = mcq_setup
    plain = _word_tokenizer(
        [_sb_prompt(*q[:3], o) for q in MCQ for o in sb_metrics.all_permutations] + ["A", " A"], None
    )
    assert plain.chat_template is None and tok.chat_template
    for q in questions:
        for order in sb_metrics.all_permutations:
            text = _sb_prompt(q.subject, q.prompt, q.choices, order)
            for t in (tok, plain):
                assert (
                    unlearning.saebench_prompt_ids(t, q, order)
                    == t(text, add_special_tokens=False)["input_ids"]
                )


def test_unlearning_answers_in_all_24_orderings_match_saebench(mcq_setup):
    tok, questions, models = mcq_setup
    orders = sb_metrics.all_permutations
    prompts = [_sb_prompt(q.subject, q.prompt, q.choices, o) for q in questions for o in orders]
    answers = torch.tensor([list(o).index(q.answer) for q in questions for o in orders])
    n_right = []
    for model in models:
        probs = sb_metrics.get_output_probs_abcd(
            _LensLike(model, tok), prompts, batch_size=24, n_batches=len(questions), verbose=False
        )
        theirs = (probs.argmax(dim=1) == answers).float().numpy()
        ours = unlearning.saebench_correct(model, tok, questions, unlearning.ALL_ORDERS, 24)
        assert np.array(ours, dtype=float).ravel().tolist() == theirs.tolist()
        known = sb_metrics._find_all_permutation_correct_ans({"is_correct": theirs})
        assert unlearning.known_in_every_order(ours) == known.tolist()
        n_right.append(int(theirs.sum()))
    assert len(set(n_right)) > 1  # the models differ in what they answer: the comparison is not vacuous


def test_known_question_rule_matches_saebench_on_random_tables():
    rng = np.random.default_rng(0)
    table = rng.random((40, 24)) < 0.9
    table[[3, 17, 29]] = True
    ours = unlearning.known_in_every_order(table.tolist())
    theirs = sb_metrics._find_all_permutation_correct_ans({"is_correct": table.astype(float).ravel()})
    assert ours == theirs.tolist() and {3, 17, 29} <= set(ours)


# --- core: the sparsity, shrinkage and reconstruction fields -------------------------------------

sb_core = require("sae_bench.evals.core.main")


class _CachingModel:
    """What SAEBench's `get_sparsity_and_variance_metrics` uses of a HookedTransformer: `run_with_cache`
    giving the residual after `layer` (from the Hugging Face model's hidden states)."""

    def __init__(self, model, layer: int):
        self.model, self.layer = model, layer

    def run_with_cache(self, tokens, prepend_bos, names_filter, stop_at_layer, **kwargs):
        assert prepend_bos is False and stop_at_layer == self.layer + 1
        hidden = self.model(input_ids=tokens, output_hidden_states=True).hidden_states[self.layer + 1]
        return None, {names_filter[0]: hidden}


class _TokenStore:
    def __init__(self, batches):
        self.batches = iter(batches)

    def get_batch_tokens(self, n: int):
        batch = next(self.batches)
        assert len(batch) == n
        return batch


class _SaeLensView:
    """Our SAE under the attribute names SAEBench reads (`cfg.hook_name`, `cfg.d_sae`, `device`, ...)."""

    def __init__(self, sae, layer: int):
        from types import SimpleNamespace

        self.sae, self.device = sae, torch.device("cpu")
        self.cfg = SimpleNamespace(
            hook_name=f"blocks.{layer}.hook_resid_post",
            hook_head_index=None,
            hook_layer=layer,
            d_sae=sae.cfg.d_sae,
        )

    def encode(self, x):
        return self.sae.encode(x)

    def decode(self, z):
        return self.sae.decode(z)


def test_core_fields_match_saebench_on_the_same_activations(tmp_path, char_tokenizer):
    from conftest import make_tiny_model

    from lorasae.sae import SaeConfig, TopKSAE
    from lorasae.saebench.core import CoreEvalConfig, run_core
    from lorasae.saebench.datasets import token_chunks

    torch.manual_seed(0)
    model, layer, batch_size = make_tiny_model("llama"), 1, 4
    (tmp_path / "c.txt").write_text(
        "\n\n".join(f"note {i}: the {w} ran far." for i, w in enumerate("abcdefgh" * 4))
    )
    tokens = token_chunks(str(tmp_path / "c.txt"), char_tokenizer, 32, 8, seed=0)
    tokens[1, 5:] = char_tokenizer.pad_token_id  # a padded row: special positions are left out on both sides
    sae = TopKSAE(SaeConfig(d_in=32, d_sae=128, k=6), fast=False)
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.3)
    cfg = CoreEvalConfig(
        batch_size_prompts=batch_size,
        n_eval_sparsity_variance_batches=2,
        compute_kl=False,
        compute_ce_loss=False,
    )
    ours = run_core(model, char_tokenizer, sae, layer, tokens, cfg, "topk")
    special = {char_tokenizer.bos_token_id, char_tokenizer.eos_token_id, char_tokenizer.pad_token_id}
    with torch.no_grad():
        theirs, theirs_features = sb_core.get_sparsity_and_variance_metrics(
            _SaeLensView(sae, layer), _CachingModel(model, layer), _TokenStore([tokens[:4], tokens[4:8]]),
            n_batches=2, compute_l2_norms=True, compute_sparsity_metrics=True, compute_variance_metrics=True,
            compute_featurewise_density_statistics=True, eval_batch_size_prompts=batch_size, model_kwargs={},
            ignore_tokens=special,
        )  # fmt: skip
    m = ours["eval_result_metrics"]
    flat = m["shrinkage"] | m["sparsity"] | m["reconstruction_quality"]
    for field in (
        "l2_norm_in", "l2_norm_out", "l2_ratio", "relative_reconstruction_bias", "l0", "l1",
        "explained_variance_legacy", "mse", "cossim",
    ):  # fmt: skip
        assert flat[field] == pytest.approx(theirs[field], rel=1e-5), field
    assert flat["squared_error_per_token"] > 100 * theirs["mse"]  # our per-token quantity, under its own name
    details = ours["eval_result_details"]
    for field in ("feature_density", "consistent_activation_heuristic"):
        values = [np.nan if d[field] is None else d[field] for d in details]  # JSON null: 0/0, a dead latent
        np.testing.assert_allclose(values, theirs_features[field], rtol=1e-5, err_msg=field)
    # explained variance differs on purpose (docs/DEVIATIONS.md): SAEBench subtracts (mean of x²)², ours
    # is 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²; both checked against their formulas on the same activations
    with torch.no_grad():
        hidden = model(input_ids=tokens[:8], output_hidden_states=True).hidden_states[layer + 1]
    keep = torch.tensor([[int(t) not in special for t in row] for row in tokens[:8]])
    x = hidden[keep].double()
    with torch.no_grad():
        x_hat = sae.decode(sae.encode(hidden))[keep].double()
    resid = (x - x_hat).pow(2).sum(-1)
    halves = [keep[:4].sum(), keep[4:].sum()]
    x_sq = [x[: halves[0]].pow(2), x[halves[0] :].pow(2)]
    saebench_total = (
        torch.stack([q.sum(-1).mean() for q in x_sq]).mean()
        - torch.cat([q.mean(0) for q in x_sq]).mean() ** 2
    )
    saebench_resid = torch.stack([resid[: halves[0]].mean(), resid[halves[0] :].mean()]).mean()
    assert theirs["explained_variance"] == pytest.approx(float(1 - saebench_resid / saebench_total), rel=1e-4)
    ours_ev = 1 - resid.sum() / (x - x.mean(0)).pow(2).sum()
    assert flat["explained_variance"] == pytest.approx(float(ours_ev), rel=1e-5)
