"""The one splice of every dictionary: a transcoder replaces its layer's MLP output (`splice_site ==
"mlp"`), the residual SAEs (JumpReLU, BatchTopK, Matryoshka) the residual after their layer; the CE with
each spliced equals a forward with a hand-written hook; the prefix cache stops before a transcoder's
layer; the SAEs are loaded, and stay, in eval mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from arch_helpers import make_dictionary
from conftest import make_tiny_model

from lorasae.lora.trainer import sae_splices
from lorasae.model.ce import mean_ce
from lorasae.model.hooks import mlp_io_at, residual_at, splice
from lorasae.model.prefix import build_prefix_cache, reusable_prefix_layer
from lorasae.sae.capabilities import sae_input_at
from lorasae.sae.splice import splice_fn

pytestmark = pytest.mark.usefixtures("one_thread")

LAYER = 1


@pytest.fixture
def model_and_chunks():
    model = make_tiny_model("llama", n_layers=3)
    chunks = torch.randint(3, 96, (6, 16), generator=torch.Generator().manual_seed(0))
    chunks[:, 0] = 1  # BOS
    return model, chunks


def _ce_with_hook(model, chunks, module, hook) -> float:
    """Mean next-token CE with `hook` on `module` (written out: logits, shift, cross-entropy)."""
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(input_ids=chunks, use_cache=False).logits
    finally:
        handle.remove()
    return float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), chunks[:, 1:].reshape(-1)))


@pytest.mark.parametrize("kind", ["transcoder", "skip_transcoder"])
def test_transcoder_ce_equals_a_hand_written_mlp_hook(model_and_chunks, kind):
    model, chunks = model_and_chunks
    tc = make_dictionary(kind, 32, LAYER)
    W_skip = tc.W_skip.detach() if tc.W_skip is not None else torch.zeros(32, 32)

    def manual(_module, args, _output):
        x = args[0]
        z = torch.relu(x @ tc.W_enc + tc.b_enc)
        return z @ tc.W_dec + tc.b_dec + x @ W_skip.t()

    expected = _ce_with_hook(model, chunks, model.model.layers[LAYER].mlp, manual)
    clean = mean_ce(model, chunks, 3)
    got = mean_ce(model, chunks, 3, sae_splices({LAYER: tc}, []))
    assert got == pytest.approx(expected, abs=1e-5)
    assert abs(got - clean) > 1e-3  # the splice did change the forward


def test_jumprelu_ce_equals_a_hand_written_residual_hook(model_and_chunks):
    model, chunks = model_and_chunks
    sae = make_dictionary("jumprelu", 32, LAYER)
    theta = sae.log_threshold.detach().exp()

    def manual(_module, _args, output):
        h = output[0] if isinstance(output, tuple) else output
        pre = h @ sae.W_enc + sae.b_enc
        rec = (pre * (pre > theta)) @ sae.W_dec + sae.b_dec
        return (rec, *output[1:]) if isinstance(output, tuple) else rec

    expected = _ce_with_hook(model, chunks, model.model.layers[LAYER], manual)
    got = mean_ce(model, chunks, 3, sae_splices({LAYER: sae}, []))
    assert got == pytest.approx(expected, abs=1e-5)


def test_transcoder_keeps_the_original_mlp_output_at_special_positions(model_and_chunks):
    model, chunks = model_and_chunks
    tc = make_dictionary("transcoder", 32, LAYER)
    fn = splice_fn(tc, chunks, special_ids=[1], skip_special=True)
    x, y = mlp_io_at(model, chunks, LAYER)
    out = fn(x, y)
    torch.testing.assert_close(out[:, 0], y[:, 0])  # BOS keeps the MLP's own output
    torch.testing.assert_close(out[:, 1:], tc.reconstruct(x)[:, 1:])
    seen = {}
    with splice(model, {LAYER: fn}):  # and through the hook: layer L's MLP output is `fn(x, y)`
        seen["io"] = mlp_io_at(model, chunks, LAYER)
    torch.testing.assert_close(seen["io"][1], out)


def test_the_input_of_a_transcoder_is_the_mlp_input_and_of_an_sae_the_residual(model_and_chunks):
    model, chunks = model_and_chunks
    with torch.no_grad():
        tc_in = sae_input_at(make_dictionary("transcoder", 32, LAYER), model, chunks, LAYER)
        sae_in = sae_input_at(make_dictionary("jumprelu", 32, LAYER), model, chunks, LAYER)
        torch.testing.assert_close(tc_in, mlp_io_at(model, chunks, LAYER)[0])
        torch.testing.assert_close(sae_in, residual_at(model, chunks, LAYER))


def test_prefix_cache_stops_before_a_transcoders_layer(model_and_chunks):
    model, chunks = model_and_chunks
    tc = make_dictionary("transcoder", 32, LAYER)
    fns = sae_splices({LAYER: tc}, [])
    assert reusable_prefix_layer(LAYER, "mlp") == LAYER - 1 and reusable_prefix_layer(LAYER) == LAYER
    assert reusable_prefix_layer(0, "mlp") is None
    at_layer, _ = build_prefix_cache(model, chunks, LAYER, 3)
    assert at_layer is not None
    with pytest.raises(ValueError, match="earlier layer"):  # layer L's cached output ignores its MLP
        at_layer.ce_sum_and_count(3, fns)
    before, _ = build_prefix_cache(model, chunks, reusable_prefix_layer(LAYER, "mlp"), 3)
    total, count = before.ce_sum_and_count(3, fns)
    assert total / count == pytest.approx(mean_ce(model, chunks, 3, fns), abs=1e-5)


@pytest.mark.parametrize("kind", ["batchtopk", "matryoshka", "jumprelu", "transcoder"])
def test_loaded_dictionaries_are_frozen_in_eval_mode_and_stay_so_in_lora_training(tmp_path, kind):
    from lorasae.lora.adapters import attach_lora
    from lorasae.lora.trainer import KLObjective
    from lorasae.store import load_saes
    from lorasae.store.saes import SaeRef

    model = make_tiny_model("llama", n_layers=3)
    make_dictionary(kind, 32, LAYER).train().save(tmp_path / kind)
    saes = load_saes([SaeRef(str(tmp_path / kind), LAYER, kind)], model)
    sae = saes[LAYER]
    assert not sae.training and not any(p.requires_grad for p in sae.parameters())
    objective = KLObjective(attach_lora(model, [0, 1, 2], 4), sae_splices(saes, []), impl="naive")
    objective.train()  # what the LoRA trainer does each step: the SAE is not one of its modules
    ids = torch.randint(3, 96, (2, 8))
    objective(ids).backward()
    assert not sae.training
    if kind in ("batchtopk", "matryoshka"):  # eval mode: the inference threshold, not the batch top k
        x = residual_at(model, ids, LAYER).reshape(-1, 32)
        pre = (x - sae.b_dec) @ sae.encoder.weight.t() + sae.encoder.bias
        fired = (pre > float(sae.threshold)) & (pre > 0)
        assert torch.equal(sae.encode(x) != 0, fired)


def test_a_transcoder_writing_another_width_than_d_model_is_refused_before_and_on_load(tmp_path):
    from lorasae.sae.sources import SaeShapeError
    from lorasae.sae.transcoder import Transcoder, TranscoderConfig
    from lorasae.store import load_saes, preflight_saes
    from lorasae.store.saes import SaeRef

    folder = Transcoder(TranscoderConfig(d_in=32, d_sae=64, d_out=16, hook_layer=LAYER)).save(tmp_path / "tc")
    with pytest.raises(SaeShapeError, match="writes 16-dimensional MLP outputs.*d_model is 32"):
        preflight_saes([str(folder)], 32)
    with pytest.raises(SaeShapeError, match="writes 16-dimensional MLP outputs"):
        load_saes([SaeRef(str(folder), LAYER, "tc")], make_tiny_model("llama", n_layers=3))


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_the_transcoder_curve_reuses_the_prefix_before_its_layer_with_equal_values(arch):
    """Issue 28 loose end 4: a transcoder's curve point caches the clean residual after layer L − 1
    (layer L's MLP is replaced, its attention runs again) and gives the full forward's CE."""
    from lorasae.train.config import TrainSaeConfig
    from lorasae.train.distributed import DistInfo
    from lorasae.train.modification import plain_rows
    from lorasae.train.transcoder_parts import TranscoderCurve

    model = make_tiny_model(arch, n_layers=3).eval()
    chunks = torch.randint(3, 96, (6, 16), generator=torch.Generator().manual_seed(0))
    for layer in (LAYER, 2, 0):
        tc = make_dictionary("skip_transcoder", 32, layer)
        cfg = TrainSaeConfig(layer=layer, val_batch_size=4)
        curves = {reuse: TranscoderCurve(cfg, model, tc, chunks, chunks, [], DistInfo(), plain_rows, reuse)
                  for reuse in (True, False)}  # fmt: skip
        for curve in curves.values():
            curve.prepare()
        cache = curves[True].prefix_cache()
        assert curves[False].prefix_cache() is None
        if layer == 0:
            assert cache is None  # nothing before layer 0's MLP to reuse
        else:
            assert cache is not None and cache.layer == layer - 1
        assert curves[True].value() == pytest.approx(curves[False].value(), abs=1e-6)
        assert curves[True].base() == pytest.approx(curves[False].base(), abs=1e-6)
