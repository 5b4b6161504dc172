"""The modular arithmetic tasks: answers against plain-Python formulas, the modular inverse, the splits."""

from __future__ import annotations

import pytest
import torch

from lorasae.grok_world.model import build_tokenizer
from lorasae.grok_world.tasks import TASKS, ModularTask, modular_inverse


@pytest.mark.parametrize("p", [2, 7, 11, 97])
def test_modular_inverse_times_b_is_one_and_matches_python(p):
    for b in range(1, p):
        inv = modular_inverse(b, p)
        assert (b * inv) % p == 1
        assert inv == pow(b, -1, p)
    with pytest.raises(ZeroDivisionError):
        modular_inverse(p, p)


def _reference(task: str, a: int, b: int, p: int) -> int:
    if task == "addition":
        return (a + b) % p
    if task == "subtraction":
        return (a - b) % p
    if task == "multiplication":
        return (a * b) % p
    if task == "floordiv":
        return (a // b) % p
    if task == "division":  # the c with c·b ≡ a, found by search (independent of the inverse formula)
        return next(c for c in range(p) if (c * b) % p == a)
    return (a + b) % p if a % 2 == 0 else (a - b) % p


@pytest.mark.parametrize("task", TASKS)
def test_answers_match_the_plain_formula_for_every_pair(task):
    t = ModularTask(task=task, prime=13, train_frac=0.5)
    pairs = t.pairs()
    assert pairs.shape[0] == (13 * 12 if task in ("division", "floordiv") else 13 * 13)
    expected = torch.tensor([_reference(task, int(a), int(b), 13) for a, b in pairs])
    assert torch.equal(t.answers(pairs), expected)


def test_division_leaves_out_b_zero_and_sequences_end_with_equals():
    t = ModularTask(task="division", prime=11)
    ids, labels = t.datasets()["all"]
    assert (ids[:, 1] != 0).all()
    assert ids.shape == (11 * 10, 3) and (ids[:, 2] == t.eq_token).all()
    assert int(labels.max()) < 11 and t.vocab_size == 13


@pytest.mark.parametrize("frac", [0.3, 0.5])
def test_split_is_a_deterministic_partition_of_all_pairs(frac):
    t = ModularTask(prime=17, train_frac=frac, seed=3)
    train, test = t.split()
    n = 17 * 17
    assert len(train) == round(frac * n) and len(train) + len(test) == n
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(n))  # disjoint and complete
    again_train, _ = ModularTask(prime=17, train_frac=frac, seed=3).split()
    other_train, _ = ModularTask(prime=17, train_frac=frac, seed=4).split()
    assert torch.equal(train, again_train)
    assert not torch.equal(train, other_train)
    data = t.datasets()
    all_ids, all_labels = data["all"]
    assert torch.equal(data["train"][0], all_ids[train]) and torch.equal(data["test"][1], all_labels[test])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="prime"):
        ModularTask(prime=12)
    with pytest.raises(ValueError, match="train_frac"):
        ModularTask(train_frac=1.5)
    with pytest.raises(ValueError, match="train_frac"):
        ModularTask(train_frac=0.0)
    with pytest.raises(ValueError, match="task"):
        ModularTask(task="exponentiation")


def test_tokenizer_maps_text_to_the_task_ids():
    t = ModularTask(prime=11)
    tok = build_tokenizer(t)
    assert tok("3 5 =")["input_ids"] == [3, 5, 11]
    assert tok.pad_token_id == t.pad_token and len(tok) == t.vocab_size


def test_floordiv_is_the_seeds_integer_quotient_mod_p_without_b_zero():
    """The seed (train-SAE `GrokkingTask`) computes `(a // b) % p` for b in 1..p-1; `floordiv` is that rule."""
    t = ModularTask(task="floordiv", prime=11)
    ids, labels = t.datasets()["all"]
    assert ids.shape == (11 * 10, 3) and (ids[:, 1] != 0).all()
    expected = [(a // b) % 11 for a in range(11) for b in range(1, 11)]
    assert labels.tolist() == expected
    assert ModularTask(task="division", prime=11).answers(ids[:, :2]).tolist() != expected  # a·b⁻¹ differs


def test_train_frac_one_trains_and_tests_on_every_pair_like_the_seed():
    t = ModularTask(prime=7, train_frac=1.0)
    train, test = t.split()
    assert torch.equal(train, torch.arange(49)) and torch.equal(test, train)
    data = t.datasets()
    assert torch.equal(data["train"][0], data["test"][0]) and torch.equal(data["train"][1], data["all"][1])
    assert t.name == "addition_p7_frac1_seed0"


def test_grok_source_names_round_trip_for_the_seed_options():
    from lorasae.grok_world.data import grok_source, parse_grok_source

    for task in (ModularTask("floordiv", 7, 1.0, 2), ModularTask("division", 11, 0.5, 0)):
        assert parse_grok_source(grok_source(task)) == task
