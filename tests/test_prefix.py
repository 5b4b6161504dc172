"""Reusing the clean prefix of the spliced forward (`lorasae/model/prefix.py`): the CE with the residual after
layer L cached equals the full spliced forward's, layers 0…L do not run, and every case the reuse is not
known to be exact falls back to the full forward."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import make_tiny_model
from torch import nn

from lorasae.model.ce import ce_sum_and_count
from lorasae.model.load import decoder_layers
from lorasae.model.prefix import PrefixCache, build_prefix_cache
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.sae.splice import splice_fn

pytestmark = pytest.mark.usefixtures("one_thread", "fast_names")  # fast runs keep plain names

N_LAYERS, D, CTX = 3, 32, 40  # Gemma-2's sliding window (16, conftest) is shorter than the context
SPECIAL = [1, 2]  # BOS, EOS of the tiny models


def _chunks(n: int = 7) -> torch.Tensor:
    """Token chunks [n, CTX]: BOS first, a few EOS inside (special positions for the splice to skip)."""
    g = torch.Generator().manual_seed(0)
    chunks = torch.randint(3, 96, (n, CTX), generator=g)
    chunks[:, 0] = 1
    chunks[1, 9] = chunks[4, 30] = 2
    return chunks


def _sae(seed: int = 1) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SaeConfig(d_in=D, d_sae=4 * D, k=4))
    with torch.no_grad():
        sae.b_dec.normal_(0.0, 3.0)  # far from the identity: the splice changes the CE by a visible amount
    return sae


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
@pytest.mark.parametrize("layer", [0, N_LAYERS - 1])
@pytest.mark.parametrize("skip_special", [False, True])
def test_prefix_ce_equals_the_full_spliced_forward(arch, layer, skip_special):
    model = make_tiny_model(arch, n_layers=N_LAYERS, d=D)
    if arch == "gemma2":  # what the test is about: local/global masks and both soft-cappings on
        assert model.config.sliding_window < CTX and model.config.final_logit_softcapping
        assert model.config.attn_logit_softcapping and "sliding_attention" in model.config.layer_types
    chunks, sae = _chunks(), _sae()
    cache, note = build_prefix_cache(model, chunks, layer, batch_size=3)  # batches of 3, 3, 1
    assert cache is not None, note

    def fns(ids):
        return {layer: splice_fn(sae, ids, SPECIAL, skip_special=skip_special)}

    full_sum, full_count = ce_sum_and_count(model, chunks, 3, fns)
    reused_sum, reused_count = cache.ce_sum_and_count(3, fns)
    assert reused_count == full_count == chunks[:, 1:].numel()
    assert reused_sum / reused_count == pytest.approx(full_sum / full_count, abs=1e-5)
    clean_sum, _ = ce_sum_and_count(model, chunks, 3)
    assert abs(full_sum - clean_sum) / full_count > 1e-3  # the splice matters, so equality says something
    assert cache.ce_sum_and_count(3)[0] / full_count == pytest.approx(clean_sum / full_count, abs=1e-5)


@pytest.mark.parametrize(
    "name, extra",
    [
        ("Gemma", {}),
        ("Qwen2", {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 1}),
        ("Qwen3", {}),
        ("Mistral", {"sliding_window": 16}),
    ],
)
def test_the_other_supported_architectures_give_the_same_ce(name, extra):
    import transformers

    torch.manual_seed(0)
    config = getattr(transformers, f"{name}Config")(
        vocab_size=96, hidden_size=D, intermediate_size=2 * D, num_hidden_layers=N_LAYERS,
        num_attention_heads=4, num_key_value_heads=2, head_dim=D // 4, max_position_embeddings=128,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, **extra,
    )  # fmt: skip
    model = getattr(transformers, f"{name}ForCausalLM")(config).eval()
    chunks, sae = _chunks(5), _sae()
    for layer in (0, N_LAYERS - 1):
        cache, note = build_prefix_cache(model, chunks, layer, batch_size=2)
        assert cache is not None, note
        fns = lambda ids, layer=layer: {layer: splice_fn(sae, ids, SPECIAL, skip_special=True)}  # noqa: E731
        full_sum, count = ce_sum_and_count(model, chunks, 2, fns)
        assert cache.ce_sum_and_count(2, fns)[0] / count == pytest.approx(full_sum / count, abs=1e-5)


def test_skipping_special_positions_changes_the_ce_the_same_way_on_both_paths():
    model, chunks, sae = make_tiny_model("llama", n_layers=N_LAYERS, d=D), _chunks(), _sae()
    cache, _ = build_prefix_cache(model, chunks, 1, batch_size=4)
    assert cache is not None
    results = {}
    for skip in (False, True):
        fns = lambda ids, skip=skip: {1: splice_fn(sae, ids, SPECIAL, skip_special=skip)}  # noqa: E731
        results[skip] = (ce_sum_and_count(model, chunks, 4, fns)[0], cache.ce_sum_and_count(4, fns)[0])
    assert results[True][0] != pytest.approx(results[False][0], abs=1e-3)
    for full, reused in results.values():
        assert reused == pytest.approx(full, abs=1e-4)


def test_layers_up_to_the_cached_one_do_not_run_and_are_restored():
    model, chunks = make_tiny_model("llama", n_layers=N_LAYERS, d=D), _chunks()
    layers = decoder_layers(model)
    originals = list(layers)
    cache, _ = build_prefix_cache(model, chunks, 1, batch_size=4)
    assert cache is not None
    calls = [0] * N_LAYERS
    handles = [
        layer.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, layer in enumerate(layers)
    ]
    try:
        cache.ce_sum_and_count(4)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [0, 0, 2]  # two batches, only the last layer
    assert list(layers) == originals
    assert cache.nbytes == chunks.numel() * D * 4


def test_an_architecture_not_known_to_be_plain_uses_the_full_forward():
    model = make_tiny_model("llama", n_layers=N_LAYERS, d=D)
    model.config.model_type = "some_new_model"
    cache, note = build_prefix_cache(model, _chunks(), 1, batch_size=4)
    assert cache is None and "full forward" in note and "some_new_model" in note


def test_a_cache_above_the_memory_cap_uses_the_full_forward():
    model, chunks = make_tiny_model("llama", n_layers=N_LAYERS, d=D), _chunks()
    need = chunks.numel() * D * 4
    cache, note = build_prefix_cache(model, chunks, 1, batch_size=4, max_bytes=need - 1)
    assert cache is None and "above the cap" in note
    cache, _ = build_prefix_cache(model, chunks, 1, batch_size=4, max_bytes=need)
    assert cache is not None and cache.nbytes == need


class _CallCounting(nn.Module):
    """A decoder layer whose output depends on how often it ran: the prefix is not reusable."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer, self.calls = layer, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.layer(*args, **kwargs) + self.calls


def test_a_prefix_that_is_not_reproducible_is_caught_by_the_first_batch_check():
    model = make_tiny_model("llama", n_layers=N_LAYERS, d=D)
    layers = decoder_layers(model)
    layers[0] = _CallCounting(layers[0])
    cache, note = build_prefix_cache(model, _chunks(), 1, batch_size=4)
    assert cache is None and "differs" in note


def test_ids_that_are_not_cached_and_earlier_splices_are_refused():
    model, chunks = make_tiny_model("llama", n_layers=N_LAYERS, d=D), _chunks()
    cache, _ = build_prefix_cache(model, chunks, 1, batch_size=4)
    assert isinstance(cache, PrefixCache)
    with cache.active(), pytest.raises(RuntimeError, match="not among the cached"):
        model(input_ids=(chunks[:2] + 1) % 96)
    with pytest.raises(ValueError, match="earlier layer"):
        cache.ce_sum_and_count(4, {0: lambda h: h})
    # after the failed forward, the model is whole again
    assert ce_sum_and_count(model, chunks, 4)[1] == chunks[:, 1:].numel()


@pytest.mark.parametrize("objective", ["topk", "e2e", "relu"])
def test_train_sae_curve_is_the_same_with_and_without_the_cache(tmp_path, out_root, capsys, objective):
    from sae_train_helpers import fast_config, write_tiny_world

    from lorasae.train.sae_trainer import train_sae

    model_dir, data = write_tiny_world(tmp_path)
    extra = {"e2e": True} if objective == "e2e" else {}
    if objective == "relu":
        extra = {"architecture": "relu"}
    run = dict(num_train_tokens=1280, eval_every_pct=20, **extra)  # 20 steps, 6 curve points
    cached = train_sae(fast_config(model_dir, data, **run))
    assert "cached once" in capsys.readouterr().out
    full = train_sae(fast_config(model_dir, data, val_prefix_cache_gib=0, overwrite=True, **run))
    assert "full forward for every curve point (the prefix cache is off" in capsys.readouterr().out
    assert len(cached.val_loss) == 6
    assert cached.val_loss == pytest.approx(full.val_loss, abs=1e-5)
    assert cached.base_ce == pytest.approx(full.base_ce, abs=1e-5)
    assert cached.val_loss[-1] != pytest.approx(cached.val_loss[0], abs=1e-3)  # the curve moves


def test_the_bench_runs_and_finds_no_ce_difference(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "validation_prefix.py"
    spec = importlib.util.spec_from_file_location("bench_validation_prefix", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    module.main(module.ValidationPrefixBench(val_tokens=256, ctx_len=64, repeats=1, curve_points=3))
    out = capsys.readouterr().out
    diff = float(out.split("|CE difference| ")[1].split()[0])
    assert diff < 1e-5 and "validation_prefix: " in out
