"""The process's store of frozen-model outputs (`lorasae.model.forward_cache`): LoRA runs that reuse the
original model's KL targets and SAE runs that reuse harvested residuals get exactly what recomputing
gives, a changed model, computation or batch is never served a stored value, and no caller can alter
what is stored."""

from __future__ import annotations

import pytest
import torch
from conftest import VOCAB, make_tiny_model

from lorasae.lora.adapters import attach_lora
from lorasae.lora.trainer import KLObjective, TrainSettings, train_lora
from lorasae.model.forward_cache import ForwardCache, base_weights_digest
from lorasae.sae import SaeConfig, TopKSAE

pytestmark = pytest.mark.usefixtures("one_thread")


def _ids(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(4, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def _splices(sae: TopKSAE):
    return lambda _ids: {1: lambda h: sae.reconstruct(h).to(h.dtype)}


def _run(targets: ForwardCache | None, rank: int, impl: str = "fused"):
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
    cache = ForwardCache()
    for rank in (1, 4):  # the second run takes every target from the store the first filled
        expected, expected_weights = _run(None, rank, impl)
        got, got_weights = _run(cache, rank, impl)
        assert got.val_losses == expected.val_losses and got.train_kl == expected.train_kl
        assert got.L_base == expected.L_base and got.L_SAE == expected.L_SAE
        assert got_weights.keys() == expected_weights.keys()
        assert all(torch.equal(got_weights[n], expected_weights[n]) for n in expected_weights)
    assert cache.misses == 6 and cache.hits == 6  # 6 steps: computed by the first run, reused by the second


def test_a_changed_model_or_batch_misses_and_adapter_weights_do_not_matter():
    cache = ForwardCache()
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


def test_a_model_too_large_for_the_store_or_off_the_cpu_is_not_cached():
    model = attach_lora(make_tiny_model("llama"), [0], rank=2)
    assert ForwardCache(max_bytes=1000).for_model(model) is None
    assert ForwardCache().for_model(make_tiny_model("llama").to("meta")) is None  # not on the CPU
    store = ForwardCache(max_bytes=10 << 20)
    lookup = store.for_model(model)
    big = torch.zeros(4 << 20)  # 16 MiB: computed and returned, not kept
    assert lookup("kl-target:fused", _ids(1, 8, 0), lambda: big) is big and store.bytes == 0
    assert (store.hits, store.misses) == (0, 1)


def _harvest(model, cache: ForwardCache | None, layer: int, monkeypatch) -> list[torch.Tensor]:
    """The rows of 4 harvested steps through `LayerRows` (with `cache` as the process's store; None: no
    store at all)."""
    from lorasae.train import rows as rows_module
    from lorasae.train.distributed import DistInfo
    from lorasae.train.modification import plain_rows

    monkeypatch.setattr(rows_module, "shared_forward_cache", lambda: cache or ForwardCache(max_bytes=0))
    rows = rows_module.LayerRows(model, layer, None, plain_rows, DistInfo(), torch.device("cpu"), 1)
    batches = iter([_ids(2, 16, seed=s) for s in range(4)])
    return list(rows.stream(batches, 4))


def test_harvested_residuals_from_the_store_equal_a_fresh_harvest_and_other_layers_miss(monkeypatch):
    model = make_tiny_model("llama")
    fresh = _harvest(model, None, 1, monkeypatch)
    cache = ForwardCache()
    first = _harvest(model, cache, 1, monkeypatch)
    again = _harvest(model, cache, 1, monkeypatch)  # another SAE run at the same layer
    assert (cache.misses, cache.hits) == (4, 4)
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(fresh, first, again))
    other = _harvest(model, cache, 0, monkeypatch)
    assert cache.misses == 8 and not torch.equal(other[0], fresh[0])


def test_a_value_handed_out_cannot_alter_the_store():
    model = make_tiny_model("llama")
    cache = ForwardCache()
    lookup = cache.for_model(model)
    x = _ids(1, 8, seed=3)
    value = torch.arange(6.0)
    computed = lookup("t", x, lambda: value)
    computed.mul_(0)  # a caller modifying the computed value in place
    served = lookup("t", x, lambda: torch.full((6,), -1.0))
    assert torch.equal(served, torch.arange(6.0))
    served.add_(5)  # and the value it was served
    assert torch.equal(lookup("t", x, lambda: torch.full((6,), -1.0)), torch.arange(6.0))


def test_the_process_store_serves_only_inside_reused_forwards_and_is_emptied_after():
    # a served forward costs no time: a timed run (main SAE, checkpoint LoRAs, the dictionaries compared)
    # must compute its own, so the shared store is off outside the sweep's block
    from lorasae.model.forward_cache import reused_forwards, shared_forward_cache

    model = make_tiny_model("llama")
    shared = shared_forward_cache()
    assert shared.for_model(model) is None
    with reused_forwards() as store:
        lookup = store.for_model(model)
        ids = _ids(2, 8, seed=3)
        lookup("t", ids, lambda: torch.ones(2))
        assert shared.bytes > 0
    assert shared.for_model(model) is None and shared.bytes == 0
