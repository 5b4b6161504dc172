"""RAVEL and unlearning (lorasae.saebench.ravel / unlearning / world_tasks): the built-in data, the
interventions and the scoring rules against hand computations, and both evals end to end on a small model
that has memorised the built-in world's facts (`saebench_fact_model`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from saebench_fact_model import FACT_ATTRIBUTES, ensure_fact_model

from lorasae.model.hooks import residual_at, splice
from lorasae.model.load import load_model
from lorasae.saebench import ravel, unlearning
from lorasae.saebench import world_tasks as w
from lorasae.saebench.schema import validate_eval_output
from lorasae.world import _lexicon as L
from lorasae.world import _lexicon_domains as D
from lorasae.world.corpus import build_world


class IdentitySae:
    """encode = decode = identity (d_sae = d): the SAE is exact, so patching every latent patches the
    residual itself."""

    def __init__(self, d: int):
        self.W_dec = torch.eye(d)
        self.cfg = {"d_in": d, "d_sae": d}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


class DiagSae(IdentitySae):
    """encode = relu(x + b) per dimension, decode = z · diag(s)."""

    def __init__(self, b: torch.Tensor, s: torch.Tensor):
        self.b, self.W_dec = b, torch.diag(s)
        self.cfg = {"d_in": len(b), "d_sae": len(b)}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x.float() + self.b)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec


@pytest.fixture(scope="module")
def facts(small_world):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model, tok = load_model(str(ensure_fact_model(Path(small_world))), "cpu")
    model.eval()
    yield model, tok
    torch.set_num_threads(before)


# --- built-in data -------------------------------------------------------------------------------


def test_ravel_prompts_are_corpus_templates_cut_before_the_value(small_world):
    _, tok = load_model(str(small_world), "cpu")
    prompts = w.builtin_ravel_prompts(tok, 0)
    countries = {c.name: c for c in build_world(0).countries}
    assert {p.attribute for p in prompts} == set(L.FACTS) and len({p.entity for p in prompts}) == len(
        countries
    )
    for p in prompts:
        assert p.label == str(getattr(countries[p.entity], p.attribute))
        assert p.label not in p.text.replace(p.entity, "")  # the value is what comes next, not in the prompt
        assert tok.decode(list(p.ids[1 : p.entity_pos + 1])).strip().endswith(p.entity)
        assert list(p.ids) == [tok.bos_token_id, *tok(p.text, add_special_tokens=False)["input_ids"]]
    canonical = [p for p in prompts if p.template == "The capital of {name} is"]
    assert len(canonical) == len(countries)
    assert "{name}'s capital," in w.ravel_templates("capital")  # a paraphrase, bracket choices expanded
    assert "The king of {name} sits in" in w.ravel_templates("capital")


def test_unlearning_questions_are_stated_by_the_corpus():
    from lorasae.world.corpus import generate_corpus

    questions = w.builtin_unlearning_questions(0, 800)
    corpus = "\n".join(d.text for d in generate_corpus(0, 800, prose=False))
    assert w.FORGET_SUBJECT in questions and len(questions) >= 3
    for subject, qs in questions.items():
        assert qs, subject
        for q in qs:
            assert f"{q.prompt} {q.choices[q.answer]}" in corpus
            assert len(set(q.choices)) == 4
    medicine = {q.choices[q.answer] for q in questions[w.FORGET_SUBJECT]}
    assert medicine & set(D.CONDITIONS)  # "X is a medicine used to treat" → a condition
    forget, retain = w.builtin_unlearning_corpora(14, 0)
    assert len(forget) == len(retain) == 14 and forget != retain


# --- RAVEL -------------------------------------------------------------------------------------


def test_patch_with_the_full_mask_replaces_the_residual_and_the_empty_mask_keeps_it(facts):
    model, tok = facts
    prompts = w.builtin_ravel_prompts(tok, 0, ["capital"])
    base, source = prompts[0], next(p for p in prompts if p.label != prompts[0].label)
    ids = torch.tensor([base.ids])
    src_h = residual_at(model, torch.tensor([source.ids]), 0)[0, source.entity_pos]
    sae = IdentitySae(src_h.shape[0])
    pos = torch.tensor([base.entity_pos])

    def by_hand(h: torch.Tensor) -> torch.Tensor:
        h = h.clone()
        h[0, base.entity_pos] = src_h
        return h

    with torch.no_grad():
        with splice(model, {0: by_hand}):
            expected = model(input_ids=ids).logits
        with splice(model, {0: ravel.patch_fn(sae, src_h[None], pos, torch.ones(src_h.shape[0]))}):
            patched = model(input_ids=ids).logits
        with splice(model, {0: ravel.patch_fn(sae, src_h[None], pos, torch.zeros(src_h.shape[0]))}):
            kept = model(input_ids=ids).logits
        clean = model(input_ids=ids).logits
    assert torch.allclose(patched, expected, atol=1e-5)
    assert torch.allclose(kept, clean, atol=1e-5)
    assert not torch.allclose(patched, clean, atol=1e-3)


def test_mask_training_schedule_and_hard_mask():
    logits = torch.tensor([-1.0, 0.0, 2.0])
    assert ravel.mask_values(logits, None).tolist() == [0.0, 0.0, 1.0]
    assert ravel.mask_values(logits, 1e-4).tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert ravel.mask_values(logits, 1.0).tolist() == pytest.approx(torch.sigmoid(logits).tolist())
    text = "The capital of Veloria is"
    assert ravel.evaluate_completion(text, "Marstad", " marstad is the")
    assert not ravel.evaluate_completion(text, "Ost", " the")
    assert not ravel.evaluate_completion(text, "Marstad", " the capital Marstad")  # a prefix, not anywhere
    assert ravel.evaluate_completion(text, "Marstad", ' Marstad" is')
    assert ravel.evaluate_completion(text, "Marstad", " Mar")
    assert not ravel.evaluate_completion(text, "Marstad", ' "Marstad')  # cut at the first quote: nothing left


CITY = "Paris is a city in the country of"
HUB_STYLE = [  # (prompt text, label, completion, SAEBench's verdict): hub-style labels of its special cases
    (CITY, "United States", " the United States of America", True),  # an article before the country
    (CITY, "United Kingdom", " England, which", True),  # a part for the whole
    (CITY, "United States", " The United States", False),  # only a lower-case "the " is dropped
    (CITY, "South Korea", " Korea, officially", True),
    ("Seoul is a city on the continent of", "North America", " NA", True),  # an abbreviation
    ("Seoul is a city on the continent of", "North America", " America.", True),
    ("Seoul is a city on the continent of", "North America", " the Americas", False),
    ("The official language of Beijing is", "Mandarin Chinese", " Chinese", True),  # named by its country
    ("The official language of Bern is", "German, French, Italian", " French and", False),
    ("The official language of Bern is", "German,French", " mostly French", True),
    ("The latitude of Oslo is", "59.91", " 61 degrees north", True),
    ("The latitude of Oslo is", "59.91", " 62 degrees north", False),
    ("The longitude of Oslo is", "10.75", " east", False),
    ("Tokyo's time zone is UTC", "Asia/Tokyo", "+9", True),
    ("Tokyo's time zone is UTC", "Asia/Tokyo", "+09:00", True),  # a leading zero
    ("Tokyo's time zone is UTC", "Asia/Tokyo", "-15", True),  # 24 − 15 = 9 hours the other way
    ("Tokyo's time zone is UTC", "Asia/Tokyo", "+8", False),
    ("Tokyo's time zone is UTC", "Not/AZone", "+8", False),
]


@pytest.mark.parametrize("text,label,completion,verdict", HUB_STYLE)
def test_ravel_completion_check_keeps_saebench_special_cases(text, label, completion, verdict):
    assert ravel.evaluate_completion(text, label, completion) is verdict


def test_utc_offsets_of_zones_without_summer_time():
    from lorasae.saebench.ravel_completion import utc_offset_now

    assert [utc_offset_now(z) for z in ("Asia/Tokyo", "Asia/Kolkata", "Pacific/Honolulu", "UTC")] == [
        "+9:00",
        "+5:30",
        "-10:00",
        "+0:00",
    ]
    assert utc_offset_now("Not/AZone") is None


def test_ravel_full_mask_causes_and_empty_mask_isolates(facts):
    """With an exact SAE, patching every latent at the entity's last token hands the base prompt (most of)
    the source entity: cause high, isolation low; patching none changes nothing (cause 0, isolation 1)."""
    model, tok = facts
    config = ravel.RAVELEvalConfig(entity_attribute_selection={"country": list(FACT_ATTRIBUTES)})
    known = ravel.filter_known(model, tok, w.builtin_ravel_prompts(tok, 0, FACT_ATTRIBUTES), config)
    assert len(known) >= 60  # the fact model knows most of its facts
    prompts, firsts = [p for p, _ in known], {i: t for i, (_, t) in enumerate(known)}
    sae = IdentitySae(model.config.hidden_size)
    latents = ravel._source_latents(model, sae, prompts, 0, 32)
    rng = __import__("random").Random(0)
    cause = ravel._pairs(prompts, "capital", 40, rng, firsts, cause=True)
    iso = ravel._pairs(prompts, "language", 40, rng, firsts, cause=False)
    args = (model, tok, sae, 0, prompts, latents)
    c_all, _, n_c, _ = ravel.score_pairs(*args, cause, firsts, torch.ones(sae.W_dec.shape[0]), config)
    _, i_all, _, n_i = ravel.score_pairs(*args, iso, firsts, torch.ones(sae.W_dec.shape[0]), config)
    c_none, _, _, _ = ravel.score_pairs(*args, cause, firsts, -torch.ones(sae.W_dec.shape[0]), config)
    _, i_none, _, _ = ravel.score_pairs(*args, iso, firsts, -torch.ones(sae.W_dec.shape[0]), config)
    assert n_c > 10 and n_i > 10
    # measured: cause 0.62, isolation 0.35 (the name's earlier tokens still reach layer 1's attention)
    assert c_all >= 0.5 and i_all <= 0.5
    assert c_none == 0.0 and i_none == 1.0


def test_ravel_end_to_end_writes_saebench_schema(facts):
    model, tok = facts
    config = ravel.RAVELEvalConfig(
        entity_attribute_selection={"country": list(FACT_ATTRIBUTES)},
        num_pairs_per_attribute=40,
        num_epochs=2,
    )
    sae = IdentitySae(model.config.hidden_size)
    out = ravel.run_ravel(
        model, tok, sae, 0, {"country": w.builtin_ravel_prompts(tok, 0)}, config, "identity"
    )
    validate_eval_output(out)
    assert out["eval_type_id"] == "ravel"
    metrics = out["eval_result_metrics"]["ravel"]
    per_attr = [
        out["eval_result_unstructured"]["per_class"]["country_results"][f"country_{a}"]
        for a in FACT_ATTRIBUTES
    ]
    for key, attr_key in (("cause_score", "cause_score"), ("isolation_score", "isolation_score")):
        assert metrics[key] == pytest.approx(sum(r[attr_key] for r in per_attr) / len(per_attr))
    assert metrics["disentanglement_score"] == pytest.approx(
        (metrics["cause_score"] + metrics["isolation_score"]) / 2
    )
    assert all(0 <= r["cause_score"] <= 1 and r["n_train_pairs"] > 0 for r in per_attr)


def test_ravel_reports_a_model_that_knows_too_little(small_world):
    model, tok = load_model(str(small_world), "cpu")
    config = ravel.RAVELEvalConfig()
    out = ravel.run_ravel(
        model,
        tok,
        IdentitySae(model.config.hidden_size),
        0,
        {"country": w.builtin_ravel_prompts(tok, 0)},
        config,
        "x",
    )
    validate_eval_output(out)
    assert out["eval_result_unstructured"]["status"] == "too_few_known_prompts"
    assert out["eval_result_metrics"]["ravel"]["cause_score"] is None


# --- unlearning ----------------------------------------------------------------------------------


def test_top_features_and_score_by_hand():
    forget = torch.tensor([0.3, 0.0, 0.5, 0.2, 0.4])
    retain = torch.tensor([0.0005, 0.0, 0.02, 0.005, 0.0])
    assert unlearning.top_features(forget, retain, 0.001) == [
        4,
        0,
    ]  # 2 and 3 too common on retain; 1 never on forget
    assert unlearning.top_features(forget, retain, 0.01) == [4, 0, 3]
    rows = [
        {"medicine": 0.2, "all_side_effects_mcq": 0.98},  # too much collateral damage: counts as 1
        {"medicine": 0.6, "all_side_effects_mcq": 0.99},
        {"medicine": 0.7, "all_side_effects_mcq": 1.0},
    ]
    assert unlearning.unlearning_score(rows) == pytest.approx(1 - 0.6)
    assert unlearning.unlearning_score(rows[:1]) == 0.0


def test_clamp_sets_active_latents_to_minus_multiplier_and_keeps_the_error():
    sae = DiagSae(torch.tensor([0.0, 0.0, -1.0]), torch.tensor([1.0, 2.0, 1.0]))
    h = torch.tensor([[[5.0, 5.0, 5.0], [1.0, -1.0, 3.0], [0.5, 2.0, 0.5]]])  # position 0 is BOS
    out = unlearning.clamp_fn(sae, [0, 2], multiplier=10)(h)
    # f = relu(h + b): latent 0 active at 1 and 2 (1, 0.5); latent 2 active at position 1 only (2)
    # Δh = (−10 − f) · W_dec row: latent 0 moves dim 0 by 1×(−10 − f0), latent 2 dim 2 by (−10 − f2)
    expected = h.clone()
    expected[0, 1, 0] += -10 - 1.0
    expected[0, 1, 2] += -10 - 2.0
    expected[0, 2, 0] += -10 - 0.5
    assert torch.allclose(out, expected)


def test_feature_sparsity_counts_active_tokens(facts):
    model, tok = facts
    sae = DiagSae(torch.zeros(model.config.hidden_size), torch.ones(model.config.hidden_size))
    texts = ["The capital of Velmora is", "Hypertension is usually caused by high blood pressure"]
    got = unlearning.feature_sparsity(model, tok, sae, 1, texts, 32, 2)
    from lorasae.saebench.activations import collect_residuals, keep_mask, tokenize_texts

    tokens = tokenize_texts(texts, tok, 32)
    h = collect_residuals(model, tokens, 1, 2)[keep_mask(tokens, tok)]
    assert torch.allclose(got, (h > 0).float().mean(0))


def test_unlearning_end_to_end(facts):
    from lorasae.saebench.activations import collect_residuals, tokenize_texts

    model, tok = facts
    forget, retain = w.builtin_unlearning_corpora(40, 0)
    # an SAE with one latent per residual direction and its sign: sparse enough to select latents
    d = model.config.hidden_size
    h = collect_residuals(model, tokenize_texts(forget + retain, tok, 48), 0, 16).reshape(-1, d)
    sae = DiagSae(-h.abs().quantile(0.9, dim=0), torch.ones(d))
    config = unlearning.UnlearningEvalConfig(
        retain_thresholds=[0.05, 0.2],
        n_features_list=[2, 8],
        multipliers=[1, 20],
        seq_len=48,
        llm_batch_size=16,
        question_format="cloze",  # the built-in world's offline variant
    )
    out = unlearning.run_unlearning(
        model, tok, sae, 0, w.builtin_unlearning_questions(0, 800), forget, retain, config, "diag"
    )
    validate_eval_output(out)
    assert out["eval_type_id"] == "unlearning"
    rows = out["eval_result_details"]
    assert len(rows) == 8 and all(len(r["features"]) <= r["n_features"] for r in rows)
    counts = out["eval_result_unstructured"]["question_counts"]
    assert counts[w.FORGET_SUBJECT]["known"] >= 20
    assert out["eval_config"]["question_format"] == "cloze"
    best = min(r[w.FORGET_SUBJECT] if r["all_side_effects_mcq"] >= 0.99 else 1.0 for r in rows)
    assert out["eval_result_metrics"]["unlearning"]["unlearning_score"] == pytest.approx(1 - best)
    assert any(r[w.FORGET_SUBJECT] < 1.0 for r in rows)  # clamping medical latents does forget something


# --- hub data (stand-in files / tables in SAEBench's formats) -------------------------------------


def test_ravel_prompts_from_saebench_files(tmp_path, small_world):
    import json

    from lorasae.saebench import hub_tasks

    _, tok = load_model(str(small_world), "cpu")
    (tmp_path / "ravel_city_entity_attributes.json").write_text(
        json.dumps({"Paris": {"Country": "France", "Continent": "Europe"}, "Tokyo": {"Country": "Japan"}})
    )
    (tmp_path / "ravel_city_attribute_to_prompts.json").write_text(
        json.dumps(
            {"Country": ["%s is a city in the country of", "The city of %s is in"], "Continent": ["%s is in"]}
        )
    )
    prompts = hub_tasks.ravel_prompts_from_files(tmp_path, "city", ["Country", "Continent"], tok)
    assert len(prompts) == 2 + 2 + 1  # Tokyo has no continent
    for p in prompts:
        assert p.text == p.template % p.entity
        assert p.ids[0] == tok.bos_token_id
        # the entity's last token: what precedes the template's remainder
        rest = tok(p.template.split("%s")[1], add_special_tokens=False)["input_ids"]
        assert list(p.ids[p.entity_pos + 1 :]) == rest
    assert {p.label for p in prompts if p.entity == "Paris"} == {"France", "Europe"}


def test_hub_unlearning_questions_from_saebench_tables(monkeypatch):
    import datasets

    from lorasae.saebench import hub_tasks

    asked = []

    def stand_in(name, config, split):
        asked.append((name, config, split))
        return [{"question": f"{config} question?", "choices": ["a", "b", "c", "d"], "answer": 2}]

    monkeypatch.setattr(datasets, "load_dataset", stand_in)
    questions = hub_tasks.hub_unlearning_questions()
    assert list(questions) == [hub_tasks.WMDP_BIO, *hub_tasks.MMLU_RETAIN_SUBJECTS]
    assert asked[0] == ("cais/wmdp", "wmdp-bio", "test") and asked[1][0] == "cais/mmlu"
    q = questions["human_aging"][0]
    assert q.answer == 2 and q.choices == ("a", "b", "c", "d")
    text = unlearning.saebench_question_text(q, (0, 1, 2, 3))
    assert text == (
        "The following are multiple choice questions (with answers) about human aging.\n"
        "human_aging question?\nA. a\nB. b\nC. c\nD. d"
    )
    wmdp = questions[hub_tasks.WMDP_BIO][0]
    assert unlearning.saebench_question_text(wmdp, (3, 2, 1, 0)).startswith("The following are multiple ")
    assert "about biology.\nwmdp-bio question?\nA. d\nB. c\nC. b\nD. a" in unlearning.saebench_question_text(
        wmdp, (3, 2, 1, 0)
    )


def test_saebench_prompt_is_the_gemma_user_turn_then_answer_paren(char_tokenizer):
    """SAEBench's text exactly without a chat template and with Gemma's (whose `| trim` would cut the
    last choice's trailing space: SAEBench does not); another template wraps the same user turn."""
    q = w.ClozeQuestion("human_aging", "Why?", ("a", "b", "c", "d "), 1)
    body = "The following are multiple choice questions (with answers) about human aging.\nWhy?"
    body += "\nA. a\nB. b\nC. c\nD. d "
    text = f"<start_of_turn>user\n{body}<end_of_turn>\n<start_of_turn>model\nAnswer: ("
    saebench = [char_tokenizer.bos_token_id, *char_tokenizer(text, add_special_tokens=False)["input_ids"]]
    assert unlearning.saebench_prompt_ids(char_tokenizer, q, (0, 1, 2, 3)) == saebench
    char_tokenizer.chat_template = (
        "{{ bos_token }}{{ '<start_of_turn>user\n' + messages[0]['content'] | trim + '<end_of_turn>\n' }}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    )
    assert unlearning.saebench_prompt_ids(char_tokenizer, q, (0, 1, 2, 3)) == saebench
    char_tokenizer.chat_template = (
        "{{ bos_token }}[{{ messages[0]['content'] }}]{% if add_generation_prompt %}>{% endif %}"
    )
    ids = unlearning.saebench_prompt_ids(char_tokenizer, q, (0, 1, 2, 3))
    rest = char_tokenizer(f"[{body}]>Answer: (", add_special_tokens=False)["input_ids"]
    assert ids == [char_tokenizer.bos_token_id, *rest]


def _always_says(tokenizer, letter: str):
    """A stand-in for the model runs of `unlearning._run`: whatever the prompt, `letter` is likeliest next."""
    favourite = tokenizer(letter, add_special_tokens=False)["input_ids"][0]

    def run(_model, seqs, _batch_size, _fns):
        out = []
        for s in seqs:
            logp = torch.full((len(s), len(tokenizer)), -10.0)
            logp[-1, favourite] = -0.1
            out.append(logp)
        return out

    return run


def test_a_question_is_known_only_when_right_in_all_24_orderings(char_tokenizer, monkeypatch):
    """A model that always answers "A" is right on a question whose answer is listed first, but only in
    the 6 orderings that keep it first: SAEBench does not count it as known (it used to be)."""
    monkeypatch.setattr(unlearning, "_run", _always_says(char_tokenizer, "A"))
    q = w.ClozeQuestion("human_aging", "Why?", ("yes", "no", "maybe", "never"), 0)
    assert unlearning.answers_correct(None, char_tokenizer, [q], "saebench", 4) == [True]
    rows = unlearning.saebench_correct(None, char_tokenizer, [q], unlearning.ALL_ORDERS, 4)
    assert len(rows[0]) == 24 and sum(rows[0]) == 6
    assert [o[0] for o, ok in zip(unlearning.ALL_ORDERS, rows[0]) if ok] == [0] * 6
    assert unlearning.known_questions(None, char_tokenizer, [q], "saebench", 4) == []
    assert unlearning.known_in_every_order([[True] * 24, rows[0], [True] * 23 + [False]]) == [0]


def test_letter_scoring_takes_the_likelier_of_letter_and_space_letter(monkeypatch):
    """ "A" is likelier than " B", " B" likelier than " A": SAEBench (max of "A"/" A" per letter) answers A;
    scoring " A" … " D" alone would answer B."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<unk>": 2, "A": 3, " A": 4, "B": 5, " B": 6, "C": 7, " C": 8, "D": 9}
    vocab[" D"] = 10
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ?[A-Z]|.", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )
    assert unlearning.letter_token_ids(tokenizer) == [[3, 4], [5, 6], [7, 8], [9, 10]]

    def run(_model, seqs, _batch_size, _fns):
        logp = torch.full((len(seqs[0]), len(vocab)), -20.0)
        logp[-1, [3, 4, 6]] = torch.tensor([-0.5, -5.0, -1.0])
        return [logp for _ in seqs]

    monkeypatch.setattr(unlearning, "_run", run)
    q = w.ClozeQuestion("human_aging", "Why?", ("yes", "no", "maybe", "never"), 0)
    assert unlearning.answers_correct(None, tokenizer, [q], "saebench", 4) == [True]
