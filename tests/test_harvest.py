"""Harvesting at full batch (lorasae/train/harvest.py): many training batches per language-model forward,
the same activations, order and optimisation as one forward per step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model
from sae_train_helpers import fast_config, write_tiny_world

from lorasae.model.hooks import residual_at
from lorasae.train.distributed import DistInfo
from lorasae.train.harvest import ActivationBuffer, default_harvest_steps

pytestmark = pytest.mark.usefixtures("one_thread", "fast_names")  # fast runs keep plain names


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_world(tmp_path_factory.mktemp("harvest_world"))


def test_buffer_yields_each_batch_activations_in_order():
    model = make_tiny_model("gemma2", n_layers=3, d=32)
    batches = [torch.randint(4, 96, (2, 16)) for _ in range(7)]
    buffer = ActivationBuffer(model, 1, iter(batches), 3, DistInfo(), torch.device("cpu"), total=7)
    got = list(buffer)
    assert len(got) == 7 and buffer.forwards == 3  # 3 + 3 + 1 batches
    for ids, acts in zip(batches, got):
        alone = residual_at(model, ids, 1).reshape(-1, 32)
        assert acts.dtype is torch.float32 and acts.shape == (32, 32)
        torch.testing.assert_close(acts, alone, atol=1e-5, rtol=1e-5)


def test_buffer_reads_no_batch_beyond_the_run():
    model = make_tiny_model("llama", n_layers=2, d=32)
    source = iter([torch.randint(4, 96, (1, 8)) for _ in range(10)])
    buffer = ActivationBuffer(model, 0, source, 4, DistInfo(), torch.device("cpu"), total=5)
    assert len(list(buffer)) == 5
    assert len(list(source)) == 5  # the other five batches were never taken


def test_buffer_takes_this_ranks_share_of_each_global_batch():
    model = make_tiny_model("llama", n_layers=2, d=32)
    batches = [torch.randint(4, 96, (4, 8)) for _ in range(4)]
    rank1 = ActivationBuffer(model, 0, iter(batches), 2, DistInfo(rank=1, world_size=2), torch.device("cpu"))
    for ids, acts in zip(batches, rank1):
        torch.testing.assert_close(acts, residual_at(model, ids[2:], 0).reshape(-1, 32), atol=1e-5, rtol=1e-5)


def test_cuda_default_harvests_32k_tokens_per_forward_and_cpu_one_step():
    assert default_harvest_steps(torch.device("cuda:0"), 1024) == 32
    assert default_harvest_steps(torch.device("cuda:0"), 65_536) == 1
    assert default_harvest_steps(torch.device("cpu"), 1024) == 1


def test_training_with_batched_harvest_equals_step_by_step(world, out_root):
    """Same SAE weights, curve and metrics after 60 steps whether 1 or 7 batches go through the model per
    forward (floating-point differences of batched GEMMs only)."""
    from lorasae.sae import TopKSAE
    from lorasae.train.sae_trainer import train_sae

    results, weights = {}, {}
    for steps in (1, 7):
        cfg = fast_config(*world, harvest_steps=steps, eval_every_pct=20)
        results[steps] = train_sae(cfg)
        weights[steps] = TopKSAE.load(results[steps].final_dir).state_dict()
    one, seven = results[1], results[7]
    assert one.steps == seven.steps == 60
    for name, value in weights[1].items():
        torch.testing.assert_close(weights[7][name], value, atol=1e-4, rtol=1e-4)
    assert one.val_loss == pytest.approx(seven.val_loss, abs=1e-4)
    assert one.val_fvu == pytest.approx(seven.val_fvu, abs=1e-4)
    assert one.train_metrics["loss"] == pytest.approx(seven.train_metrics["loss"], abs=1e-4)
