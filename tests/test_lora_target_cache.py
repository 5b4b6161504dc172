"""The LoRA session's KL-target store (`lorasae.lora.target_cache`): runs that reuse the original model's
outputs train exactly as runs that recompute them, and a changed model or batch is never served a stored
target."""

from __future__ import annotations

import pytest
import torch
from conftest import VOCAB, make_tiny_model

from lorasae.lora.adapters import attach_lora
from lorasae.lora.target_cache import TargetCache, base_weights_digest
from lorasae.lora.trainer import KLObjective, TrainSettings, train_lora
from lorasae.sae import SaeConfig, TopKSAE

pytestmark = pytest.mark.usefixtures("one_thread")


def _ids(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(4, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def _splices(sae: TopKSAE):
    return lambda _ids: {1: lambda h: sae.reconstruct(h).to(h.dtype)}


def _run(targets: TargetCache | None, rank: int, impl: str = "fused"):
    """One LoRA run on a fresh copy of the same tiny model: its result and trained adapter weights."""
    torch.manual_seed(0)
    model = make_tiny_model("llama")
    sae = TopKSAE(SaeConfig.from_expansion(32, 4, 4, hook_layer=1)).requires_grad_(False)
    torch.manual_seed(1)
    peft_model = attach_lora(model, [0, 1, 2], rank=rank)
    batches = iter([_ids(2, 24, seed=s) for s in range(6)])
    settings = TrainSettings(
        num_train_examples=12, batch_size=2, lr=1e-3, eval_every=6, progress=False, kl_impl=impl
    )
    result = train_lora(peft_model, _splices(sae), batches, _ids(4, 24, seed=99), settings, targets=targets)
    weights = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
    return result, weights


@pytest.mark.parametrize("impl", ["fused", "chunked"])
def test_runs_reusing_targets_train_bit_identically_to_recomputing_runs(impl):
    cache = TargetCache()
    for rank in (1, 4):  # the second run takes every target from the store the first filled
        expected, expected_weights = _run(None, rank, impl)
        got, got_weights = _run(cache, rank, impl)
        assert got.val_losses == expected.val_losses and got.train_kl == expected.train_kl
        assert got.L_base == expected.L_base and got.L_SAE == expected.L_SAE
        assert got_weights.keys() == expected_weights.keys()
        assert all(torch.equal(got_weights[n], expected_weights[n]) for n in expected_weights)
    assert cache.misses == 6 and cache.hits == 6  # 6 steps: computed by the first run, reused by the second


def test_a_changed_model_or_batch_misses_and_adapter_weights_do_not_matter():
    cache = TargetCache()
    model = attach_lora(make_tiny_model("llama"), [0, 1], rank=2)
    objective = KLObjective(model, _splices(TopKSAE(SaeConfig.from_expansion(32, 4, 4, hook_layer=1))))
    objective.cached = cache.for_model(model)
    x, y = _ids(2, 16, seed=1), _ids(2, 16, seed=2)
    first = objective.target(x)
    assert torch.equal(objective.target(x), first) and (cache.hits, cache.misses) == (1, 1)
    objective.target(y)  # another batch
    assert cache.misses == 2
    digest = base_weights_digest(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    assert base_weights_digest(model) == digest  # the target is the original model's: adapters excluded
    with torch.no_grad():
        model.get_base_model().model.layers[0].mlp.up_proj.base_layer.weight.mul_(1.5)
    objective.cached = cache.for_model(model)
    changed = objective.target(x)
    assert cache.misses == 3 and not torch.equal(changed, first)
    assert torch.equal(changed, objective._target(x))


def test_a_model_too_large_for_the_store_is_not_cached():
    model = attach_lora(make_tiny_model("llama"), [0], rank=2)
    assert TargetCache(max_bytes=1000).for_model(model) is None
    store = TargetCache(max_bytes=10 << 20)
    lookup = store.for_model(model)
    big = torch.zeros(4 << 20)  # 16 MiB: computed and returned, not kept
    assert lookup("fused", _ids(1, 8, 0), lambda: big) is big and store.bytes == 0
    assert (store.hits, store.misses) == (0, 1)
