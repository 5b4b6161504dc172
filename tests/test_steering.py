"""Steering eval pieces: log-likelihood alignment, statistics, the edit, parsing, tuning rule, splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_char_tokenizer, make_tiny_model
from scipy import stats as sstats
from torch import nn

from lorasae.model.hooks import splice
from lorasae.steering.alpha_rule import AlphaScore, choose_alpha, parse_grid, score_alpha
from lorasae.steering.example_sources import dedup, dedup_key, parse_examples, split_snippets
from lorasae.steering.intervention import steer, steering_fn, unit_direction
from lorasae.steering.loglik import encode_texts, mean_logliks, text_logliks, token_logprobs
from lorasae.steering.negatives import split_sets
from lorasae.steering.stats import lora_minus_base, minmax_normalise, normalised_delta, t_interval

# --- log-likelihood ---------------------------------------------------------------------------------


class TableModel(nn.Module):
    """logits[b, t] = TABLE[t] whatever the input: predictions we can work out by hand."""

    TABLE = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        B, T = input_ids.shape
        return type("Out", (), {"logits": self.TABLE[:T].unsqueeze(0).expand(B, T, 3).clone()})()


def _log_softmax(row: list[float], i: int) -> float:
    return row[i] - math.log(sum(math.exp(v) for v in row))


def test_loglik_alignment_matches_hand_computation():
    ids = [1, 0, 2, 1]
    table = TableModel.TABLE.tolist()
    # logits at position t predict token t+1
    hand = [_log_softmax(table[t], ids[t + 1]) for t in range(3)]
    got = token_logprobs(TableModel.TABLE.unsqueeze(0), torch.tensor([ids]))[0].tolist()
    assert got == pytest.approx(hand, abs=1e-6)
    # the original's off-by-one (log_probs[1:] against ids[1:]) gives a different number
    off_by_one = [_log_softmax(table[t], ids[t]) for t in range(1, 4)]
    assert sum(off_by_one) / 3 != pytest.approx(sum(hand) / 3, abs=1e-3)

    # per-example mean over the scored tokens; padding (shorter second example) is masked out
    means = mean_logliks(TableModel(), [ids, ids[:3]], batch_size=2, pad_id=0)
    assert means[0] == pytest.approx(sum(hand) / 3, abs=1e-6)
    assert means[1] == pytest.approx(sum(hand[:2]) / 2, abs=1e-6)


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_batched_logliks_equal_one_at_a_time(arch):
    model = make_tiny_model(arch)
    tok = make_char_tokenizer()
    texts = ["the cat sat", "a much longer sentence about science", "hi", "mid length text"]
    batched = text_logliks(model, tok, texts, batch_size=4)
    single = np.array([text_logliks(model, tok, [t], batch_size=1)[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # BOS first, so a 2-character text scores 2 tokens
    assert encode_texts(tok, ["hi"])[0][0] == tok.bos_token_id
    with torch.no_grad():
        ids = torch.tensor(encode_texts(tok, ["hi"]))
        manual = torch.log_softmax(model(ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None]).mean()
    assert single[2] == pytest.approx(float(manual), abs=1e-5)


# --- statistics ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 5, 40])
def test_t_interval_matches_scipy(n):
    x = np.random.default_rng(n).normal(1.0, 2.0, size=n)
    for confidence in (0.90, 0.95):
        iv = t_interval(x, confidence)
        low, high = sstats.t.interval(confidence, n - 1, loc=x.mean(), scale=sstats.sem(x))
        assert (iv.mean, iv.low, iv.high, iv.n) == pytest.approx((x.mean(), low, high, n))


def test_t_interval_degenerate_cases():
    assert math.isnan(t_interval([]).mean)
    one = t_interval([3.0])
    assert one.mean == 3.0 and math.isnan(one.low)
    flat = t_interval([2.0, 2.0, 2.0])
    assert flat.low == flat.high == 2.0


def test_normalisation_and_paired_difference():
    u = np.array([-3.0, -2.0, -1.0])
    s = np.array([-2.5, -2.0, 0.0])
    np.testing.assert_allclose(minmax_normalise(u, u), [0, 50, 100])
    np.testing.assert_allclose(minmax_normalise(s, u), [25, 50, 150])
    np.testing.assert_allclose(normalised_delta(u, s), [25, 0, 50])
    np.testing.assert_allclose(normalised_delta(u, s, scale=1.0), [0.25, 0, 0.5])
    base, lora = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.5, 5.0])
    iv = lora_minus_base(lora, base)
    ref = sstats.t.interval(0.9, 2, loc=np.mean(lora - base), scale=sstats.sem(lora - base))
    assert (iv.low, iv.high) == pytest.approx(ref)
    with pytest.raises(ValueError, match="shape"):
        lora_minus_base(lora, base[:2])


# --- the edit --------------------------------------------------------------------------------------


def test_multiplicative_and_additive_edit():
    torch.manual_seed(0)
    raw = torch.randn(6)
    W_dec = torch.randn(4, 6)
    W_dec[2] = 3 * raw
    d = unit_direction(W_dec, 2)
    assert d.norm() == pytest.approx(1.0) and torch.allclose(d, raw / raw.norm())
    h = torch.randn(2, 5, 6)
    alpha = 2.5
    out = steering_fn(d, alpha)(h)
    proj_in, proj_out = h @ d, out @ d
    torch.testing.assert_close(proj_out, (1 + alpha) * proj_in)  # component along d scaled by 1 + alpha
    torch.testing.assert_close(out - proj_out[..., None] * d, h - proj_in[..., None] * d)  # rest untouched
    torch.testing.assert_close(out, h + alpha * (h * d).sum(-1, keepdim=True) * d)
    removed = steering_fn(d, -1.0)(h)
    torch.testing.assert_close(removed @ d, torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(steering_fn(d, alpha, "additive")(h), h + alpha * d)
    half = steering_fn(d, alpha)(h.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="mode"):
        steering_fn(d, 1.0, "sideways")
    with pytest.raises(ValueError, match="out of range"):
        unit_direction(W_dec, 4)


def test_steer_edits_only_the_chosen_layer_output():
    model = make_tiny_model("llama")
    ids = torch.randint(4, 96, (2, 10))
    d = unit_direction(torch.randn(8, 32), 3)
    seen = {}

    def capture(h):
        seen["h"] = h.clone()
        return h

    with torch.no_grad():
        clean = model(ids).logits
        with steer(model, 1, d, 0.0):
            same = model(ids).logits
        with steer(model, 1, d, 4.0), splice(model, {2: capture}):
            steered = model(ids).logits
        with splice(model, {1: lambda h: h + 4.0 * (h @ d)[..., None] * d}), splice(model, {2: capture}):
            manual = model(ids).logits
    torch.testing.assert_close(same, clean)
    torch.testing.assert_close(steered, manual)
    assert not torch.allclose(steered, clean)


# --- examples, parsing, dedup ----------------------------------------------------------------------


def test_parse_examples_formats():
    numbered = 'Here are examples:\n1. "Stars fuse hydrogen into helium in their cores."\n2) Atoms bond to form molecules in reactions.\n\n3. Short'
    assert parse_examples(numbered) == [
        "Stars fuse hydrogen into helium in their cores.",
        "Atoms bond to form molecules in reactions.",
    ]
    bullets = "- Cells divide by mitosis every day.\n* Gravity bends the path of light."
    assert len(parse_examples(bullets)) == 2
    as_json = '```json\n["Electrons orbit the nucleus of atoms.", "Plants convert light into sugar."]\n```'
    assert parse_examples(as_json) == [
        "Electrons orbit the nucleus of atoms.",
        "Plants convert light into sugar.",
    ]
    assert parse_examples('{"examples": ["Magnets attract iron filings strongly."]}') == [
        "Magnets attract iron filings strongly."
    ]
    plain = "Light travels faster than sound in air.\nWater boils at one hundred degrees."
    assert len(parse_examples(plain)) == 2


def test_dedup_ignores_case_punctuation_and_spacing():
    texts = ["Stars are hot.", "stars  are HOT", "Stars are hot!", "Planets orbit stars."]
    assert dedup(texts) == ["Stars are hot.", "Planets orbit stars."]
    assert dedup(texts, seen=["PLANETS orbit stars"]) == ["Stars are hot."]
    assert dedup_key(" A,  b! ") == "a b"


def test_split_snippets():
    text = (
        "Short one. This sentence has quite a few words in it. Tiny! Another reasonably long sentence here."
    )
    pieces = split_snippets(text, min_words=4, max_words=6)
    assert pieces[0] == "Short one. This sentence has quite"
    assert all(4 <= len(p.split()) <= 6 for p in pieces)


# --- tuning rule and splits ------------------------------------------------------------------------


def test_score_and_choose_alpha():
    deltas = {
        "base": {"positive": np.array([1.0, 3.0]), "medical": np.array([0.0, -2.0])},
        "lora": {"positive": np.array([4.0, 4.0]), "medical": np.array([1.0, 1.0])},
    }
    s = score_alpha(2.0, deltas)
    assert s.positive == {"base": 2.0, "lora": 4.0} and s.negative == {"base": -1.0, "lora": 1.0}
    assert s.selectivity == pytest.approx(((2 + 1) + (4 - 1)) / 2)
    assert AlphaScore.from_dict(s.as_dict()) == s

    def mk(alpha, pos, neg):
        return AlphaScore(alpha, {"base": pos, "lora": pos}, {"base": neg, "lora": neg})

    # a destructive alpha (everything collapses, the negatives faster) is outside the side-effect budget
    scores = [mk(1, 2.0, 0.5), mk(4, 6.0, -1.0), mk(8, 6.0, -1.0), mk(32, -40.0, -90.0)]
    choice = choose_alpha(scores, max_negative_drop=5.0)
    assert choice.alpha == 4 and choice.warning is None  # tie with 8 → smaller |alpha|
    assert choose_alpha(scores, max_negative_drop=100.0).alpha == 32
    relative = choose_alpha([mk(1, -1.0, -2.0), mk(2, -3.0, -9.0)], max_negative_drop=5.0)
    assert relative.alpha == 1 and "does not raise the positives" in relative.warning
    gentlest = choose_alpha([mk(1, -6.0, -7.0), mk(2, -3.0, -9.0)], max_negative_drop=5.0)
    assert gentlest.alpha == 1 and "gentlest" in gentlest.warning
    # the side effect counts for the worse-off model
    mixed = AlphaScore(3, {"base": 5.0, "lora": 5.0}, {"base": -1.0, "lora": -6.0})
    assert mixed.worst_negative == -6.0 and choose_alpha([mixed, mk(1, 1.0, 0.0)]).alpha == 1
    assert parse_grid("0.5, 1 2") == [0.5, 1.0, 2.0]


def test_split_sets_disjoint_and_deterministic():
    positives = [f"positive example number {i}" for i in range(20)]
    negatives = {
        "medical": ["a medical note here"] * 3 + ["positive example number 3"],
        "law": ["a law text"],
    }
    tune, test = split_sets(positives, negatives, "medical", 0.3, seed=1)
    tune2, test2 = split_sets(positives, negatives, "medical", 0.3, seed=1)
    assert tune.positive == tune2.positive and test.positive == test2.positive
    assert len(tune.positive) == 6 and len(test.positive) == 14
    assert not set(tune.positive) & set(test.positive)
    assert list(tune.negatives) == ["medical"] and list(test.negatives) == ["law"]
    assert tune.negatives["medical"] == ["a medical note here"]  # deduplicated, positive removed
    with pytest.raises(ValueError, match="tuning set"):
        split_sets(positives, negatives, "verse")


def test_concept_latent_is_the_best_detector():
    from lorasae.steering.concept import auroc, choose_concept_latent

    labels = np.array([True] * 4 + [False] * 6)
    features = np.zeros((10, 4))
    features[:4, 0] = [5.0, 4.0, 6.0, 5.0]  # fires on every concept text, strongly on two others
    features[4:6, 0] = [9.0, 9.0]
    features[:3, 1] = [0.1, 0.2, 0.1]  # fires on 3 of 4 concept texts and nowhere else
    features[:, 2] = 1.0  # fires everywhere
    features[[0, 5], 3] = 1.0  # no preference
    choice = choose_concept_latent(features, labels)
    assert choice.latent == 1 and choice.rate_concept == 0.75 and choice.rate_other == 0.0
    assert [latent for latent, _ in choice.ranking[:2]] == [1, 0]  # J: 0.75 vs 1 − 2/6
    assert choice.auroc == pytest.approx(auroc(features[:4, 1], features[4:, 1]))
    assert auroc(np.array([2.0, 3.0]), np.array([1.0, 2.0])) == pytest.approx(0.875)
    assert "fires in 75% of science" in choice.describe("science")
    with pytest.raises(ValueError, match="both"):
        choose_concept_latent(features, np.ones(10, bool))


def test_hub_negative_sets_and_cache(out_root, monkeypatch):
    from lorasae.steering import negatives

    seen = []

    def fake_hub_texts(source, seed):
        seen.append(source.path)
        return iter([f"{source.column} row {i} with enough words in it   here" for i in range(50)])

    monkeypatch.setattr(negatives, "hub_texts", fake_hub_texts)
    with pytest.warns(UserWarning, match="law"):
        sets = negatives.load_negative_sets("hub", count=5, seed=3)
    assert list(sets) == ["medical", "arabic", "recipes", "shakespeare"]  # tuning set first; law needs an LLM
    assert sets["recipes"][0] == "input row 0 with enough words in it here"
    assert "medalpaca/medical_meadow_medical_flashcards" in seen and len(sets["arabic"]) == 5
    assert negatives.negatives_file("hub", "recipes", count=5, seed=3).exists()
    assert negatives.negatives_file("hub", "recipes", 5, 3).name == "recipes__n-5_seed-3.json"  # off defaults
    seen.clear()
    with pytest.warns(UserWarning, match="law"):
        again = negatives.load_negative_sets("hub", count=5, seed=3)
    assert again == sets and seen == []  # served from the cache
    with pytest.warns(UserWarning, match="law"):
        negatives.load_negative_sets("hub", count=5, seed=4)
    assert len(seen) == 4  # another seed: rebuilt
