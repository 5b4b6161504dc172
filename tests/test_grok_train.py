"""Grokking-world training on a small prime: reaches 100 % train accuracy fast, checkpoints resume exactly,
the registry entry points at the cached model (SAEs and crosscoders on it: test_grok_train_sae.py)."""

from __future__ import annotations

import json

import pytest
import torch
from grok_helpers import small_grok_config

from lorasae.core import grok_paths
from lorasae.grok.experiments import continue_training
from lorasae.grok_world.train import checkpoint_steps, ensure_grok_model, train_grok
from lorasae.model.load import load_model

CFG = small_grok_config()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("grok")
    return base, train_grok(CFG, base, progress=False)


def test_small_prime_run_reaches_full_train_accuracy_and_saves_everything(small_run):
    base, result = small_run
    assert result.train_acc_step is not None and result.train_acc_step <= 60
    assert result.curves.train_acc[-1] == 1.0
    assert result.curves.step == [0, 10, 20, 30, 40, 50, 60]
    assert checkpoint_steps(CFG.run_name, base) == [0, 20, 40, 60]  # step 0: the initialisation
    saved = json.loads((grok_paths.grok_data_dir(CFG.run_name, base) / "curves.json").read_text())
    assert saved["train_acc"] == result.curves.train_acc
    model, tokenizer = load_model(str(result.final_dir), device="cpu")
    ids, labels = CFG.task.datasets()["train"]
    with torch.no_grad():
        assert (model(input_ids=ids).logits[:, -1, :11].argmax(-1) == labels).all()


def test_ensure_grok_model_reuses_a_finished_run(small_run):
    base, result = small_run
    stamp = (result.final_dir / "state.json").stat().st_mtime_ns
    assert ensure_grok_model(CFG, base) == result.final_dir
    assert (result.final_dir / "state.json").stat().st_mtime_ns == stamp


def test_continuing_from_a_checkpoint_reproduces_the_run(small_run):
    base, result = small_run
    data = CFG.task.datasets()
    _, curves = continue_training(CFG, grok_paths.grok_checkpoint_dir(CFG.run_name, 20, base), data, 60)
    assert curves.step == [20, 30, 40, 50, 60]
    torch.testing.assert_close(
        torch.tensor(curves.train_loss), torch.tensor(result.curves.train_loss[2:]), rtol=1e-4, atol=1e-6
    )
    assert curves.test_acc == result.curves.test_acc[2:]


def test_grok_registry_entry_resolves_to_the_cached_model(monkeypatch, tmp_path):
    import lorasae.grok_world.train as grok_train
    from lorasae.model.load import MODEL_REGISTRY, resolve_model_name

    monkeypatch.setattr(grok_train, "ensure_grok_model", lambda: tmp_path / "final")
    assert "grok" in MODEL_REGISTRY
    assert resolve_model_name("grok") == str(tmp_path / "final")
