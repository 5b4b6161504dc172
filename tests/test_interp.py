"""The interpretability analysis (`lorasae/interp/`): per-layer distances and cosines against independent
computations on tiny random models, the per-token loss difference against two separate CE computations,
the bootstrap interval, the log histogram, and `eval/interp_analysis/run.py` end to end on the built-in
world."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_tiny_model

from lorasae.core.records import read_record
from lorasae.interp.activations import forward_states, layer_metrics
from lorasae.interp.pipeline import analyse, summarise_metrics
from lorasae.interp.stats import bootstrap_interval
from lorasae.interp.token_loss import log_histogram, loss_difference, summarise

pytestmark = pytest.mark.usefixtures("one_thread")

N_LAYERS = 3
SAE_LAYER = 1


def _ids(n: int = 4, t: int = 12, seed: int = 0) -> torch.Tensor:
    ids = torch.randint(4, 96, (n, t), generator=torch.Generator().manual_seed(seed))
    ids[:, 0] = 1  # BOS first, as the packed chunks
    return ids


def _peft(arch: str = "llama", scale: float = 0.0):
    """A tiny model with rank-2 LoRA on every layer; B ~ N(0, scale) (0: the adapter is the identity)."""
    from lorasae.lora.adapters import attach_lora

    model = attach_lora(make_tiny_model(arch, n_layers=N_LAYERS), layers=list(range(N_LAYERS)), rank=2)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, scale) if scale else param.zero_()
    return model.eval()


def _perturb(seed: int = 3, size: float = 0.5):
    """A stand-in "SAE": adds a fixed random vector to the residual stream (an error the later layers see)."""

    def make(d: int):
        offset = size * torch.randn(d, generator=torch.Generator().manual_seed(seed))
        return lambda h: h + offset.to(h.dtype)

    return make


def _independent_states(model, ids, fn=None) -> list[np.ndarray]:
    """Decoder-layer outputs from `output_hidden_states` (entry l+1 is layer l's output, taken before any
    forward hook of that layer runs; the last entry is after the final norm, so only layers 0 … n−2),
    with `fn` applied to layer SAE_LAYER's output by a raw forward hook."""
    from lorasae.model.load import decoder_layers

    handle = None
    if fn is not None:

        def hook(_m, _a, out):
            return fn(out) if isinstance(out, torch.Tensor) else (fn(out[0]), *out[1:])

        handle = decoder_layers(model)[SAE_LAYER].register_forward_hook(hook)
    try:
        with torch.no_grad():
            hs = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
    finally:
        if handle is not None:
            handle.remove()
    return [hs[layer + 1].double().numpy() for layer in range(len(hs) - 2)]


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_identity_splice_gives_zero_distance_and_unit_cosine(arch):
    model = make_tiny_model(arch, n_layers=N_LAYERS)
    ids = _ids()
    layers = list(range(SAE_LAYER, N_LAYERS))
    clean, _ = forward_states(model, ids, layers)
    same, _ = forward_states(model, ids, layers, {SAE_LAYER: lambda h: h})
    l2, cos = layer_metrics(clean, same)
    assert l2.shape == cos.shape == (len(ids), len(layers))
    assert torch.all(l2 == 0)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-6)


def test_distances_and_cosines_match_an_independent_computation():
    model = make_tiny_model("llama", n_layers=4)
    ids = _ids()
    fn = _perturb()(model.config.hidden_size)
    layers = [SAE_LAYER, SAE_LAYER + 1]  # layers whose output output_hidden_states gives un-normed
    clean, _ = forward_states(model, ids, layers)
    spliced, _ = forward_states(model, ids, layers, {SAE_LAYER: fn})
    l2, cos = layer_metrics(clean, spliced)

    ref_clean = _independent_states(model, ids)
    ref_spliced = _independent_states(model, ids, fn)
    # at the SAE's layer the spliced state is fn(clean state); after it, the hooked run's own states
    ref_spliced[SAE_LAYER] = fn(torch.from_numpy(ref_clean[SAE_LAYER])).numpy()
    for j, layer in enumerate(layers):
        a, b = ref_clean[layer], ref_spliced[layer]
        want_l2 = np.linalg.norm(a - b, axis=-1).mean(axis=-1)
        want_cos = ((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).mean(-1)
        np.testing.assert_allclose(l2[:, j].numpy(), want_l2, rtol=1e-4)
        np.testing.assert_allclose(cos[:, j].numpy(), want_cos, rtol=1e-5)
    # at the SAE's layer the distance is the splice's own error: ‖offset‖ at every position
    offset = fn(torch.zeros(model.config.hidden_size))
    np.testing.assert_allclose(l2[:, 0].numpy(), float(offset.norm()), rtol=1e-4)
    assert torch.all(l2[:, 1] > 0)  # the error propagates to the next layer


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_identity_adapter_and_identity_sae_change_nothing(arch):
    model = _peft(arch, scale=0.0)
    raw = analyse(
        model, _ids(), list(range(SAE_LAYER, N_LAYERS)), lambda ids: {SAE_LAYER: lambda h: h}, 2, False
    )
    for variant in ("base", "lora"):
        assert torch.all(raw.l2[variant] == 0)
        assert torch.allclose(raw.cosine[variant], torch.ones_like(raw.cosine[variant]), atol=1e-6)
    assert torch.equal(raw.token_ce["sae"], raw.token_ce["clean"])
    assert torch.equal(raw.token_ce["lora_sae"], raw.token_ce["sae"])


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_token_loss_difference_is_the_difference_of_two_independent_ces(arch):
    import torch.nn.functional as F

    model = _peft(arch, scale=0.3)
    ids = _ids(n=5, t=10, seed=2)
    fn = _perturb()(model.config.hidden_size)
    raw = analyse(model, ids, list(range(SAE_LAYER, N_LAYERS)), lambda _ids: {SAE_LAYER: fn}, 2, False)

    def manual_ce(adapter_on: bool) -> np.ndarray:
        """log-softmax and gather by hand, through a raw forward hook."""
        from lorasae.model.load import decoder_layers

        def hook(_m, _a, out):
            return fn(out) if isinstance(out, torch.Tensor) else (fn(out[0]), *out[1:])

        handle = decoder_layers(model)[SAE_LAYER].register_forward_hook(hook)
        try:
            with torch.no_grad():
                if adapter_on:
                    logits = model(input_ids=ids).logits
                else:
                    with model.disable_adapter():
                        logits = model(input_ids=ids).logits
        finally:
            handle.remove()
        logp = F.log_softmax(logits.double(), dim=-1)[:, :-1]
        return -logp.gather(-1, ids[:, 1:, None]).squeeze(-1).numpy()

    l_sae, l_lora = manual_ce(False), manual_ce(True)
    np.testing.assert_allclose(raw.token_ce["sae"].numpy(), l_sae, rtol=1e-5)
    np.testing.assert_allclose(raw.token_ce["lora_sae"].numpy(), l_lora, rtol=1e-5)
    diff = loss_difference(raw.token_ce["sae"], raw.token_ce["lora_sae"])
    np.testing.assert_allclose(diff, l_sae - l_lora, atol=1e-5)
    assert np.abs(diff).max() > 1e-3  # the adapter really changes the losses
    # the LoRA variant's states differ from the base variant's after the splice
    assert not torch.allclose(raw.l2["lora"], raw.l2["base"])


def test_bootstrap_interval_contains_the_mean_and_matches_the_normal_width():
    rng = np.random.default_rng(0)
    sample = rng.normal([0.0, 1.0], [1.0, 0.1], size=(400, 2))
    iv = bootstrap_interval(sample, confidence=0.90, resamples=3000, seed=1)
    np.testing.assert_allclose(iv.mean, sample.mean(axis=0))
    assert np.all(iv.low < iv.mean) and np.all(iv.mean < iv.high)
    normal_half = 1.645 * sample.std(axis=0, ddof=1) / np.sqrt(len(sample))
    np.testing.assert_allclose((iv.high - iv.low) / 2, normal_half, rtol=0.15)
    wider = bootstrap_interval(sample, confidence=0.99, resamples=3000, seed=1)
    assert np.all(wider.high - wider.low > iv.high - iv.low)
    one = bootstrap_interval(sample[:1])
    assert np.array_equal(one.low, one.mean) and np.array_equal(one.high, one.mean)


def test_log_histogram_splits_improvements_and_degradations_and_counts_out_of_range():
    edges = np.array([1e-3, 1e-2, 1e-1, 1.0])
    diff = np.array([5e-3, 2e-2, 3e-2, 0.5, -5e-3, -0.2, 0.0, 1e-4, 4.0, -7.0])
    h = log_histogram(diff, edges)
    assert h["improved"] == [1, 2, 1] and h["degraded"] == [1, 0, 1]
    assert h["improved_below_range"] == 1 and h["improved_above_range"] == 1
    assert h["degraded_below_range"] == 0 and h["degraded_above_range"] == 1
    assert h["unchanged"] == 1 and h["n_tokens"] == len(diff)
    s = summarise(diff)
    assert s["fraction_improved"] == pytest.approx(6 / 10) and s["fraction_degraded"] == pytest.approx(3 / 10)
    assert s["mean_diff"] == pytest.approx(diff.mean()) and s["max_abs_diff"] == 7.0


def test_summary_record_is_lora_minus_base_of_the_per_sequence_values():
    model = _peft(scale=0.3)
    fn = _perturb()(model.config.hidden_size)
    raw = analyse(model, _ids(n=6), list(range(SAE_LAYER, N_LAYERS)), lambda _ids: {SAE_LAYER: fn}, 3, False)
    rec = summarise_metrics(raw, SAE_LAYER, resamples=200)
    assert rec["layers"] == [1, 2] and rec["layers_after_sae"] == [0, 1] and rec["num_sequences"] == 6
    for metric, per_seq in (("l2", raw.l2), ("cosine", raw.cosine)):
        want = (per_seq["lora"].double() - per_seq["base"].double()).mean(0).numpy()
        np.testing.assert_allclose(rec[metric]["lora_minus_base"]["mean"], want, rtol=1e-9)
        np.testing.assert_allclose(rec[metric]["base"], per_seq["base"].double().mean(0).numpy())
    json.dumps(rec)  # the record is plain JSON


# --- end to end on the built-in world ------------------------------------------------------------


def test_script_end_to_end_on_the_built_in_world(world_model, out_root, capsys):
    """Save an SAE and an adapter where train_sae.py / train_lora.py would, then the script with no SAE or
    adapter flags: the store finds both; the record's numbers match independent computations."""
    from lorasae.core.cli import parse
    from lorasae.core.paths import adapter_dir, plots_dir, sae_dir, sae_tag
    from lorasae.interp.run import InterpArgs, find_records, run_interp
    from lorasae.lora.adapters import attach_lora
    from lorasae.model.ce import mean_ce
    from lorasae.model.data import load_token_split
    from lorasae.model.defaults import default_k
    from lorasae.model.hooks import residual_at
    from lorasae.model.load import d_model, load_model, num_layers
    from lorasae.sae import SaeConfig, TopKSAE

    model, tokenizer = load_model(str(world_model), device="cpu")
    d, n = d_model(model), num_layers(model)
    k = default_k(d)
    torch.manual_seed(0)
    sae = TopKSAE(SaeConfig(d_in=d, d_sae=8 * d, k=k, hook_layer=SAE_LAYER), fast=False).eval()
    sae.save(sae_dir(world_model.name, "normal", 8, k, SAE_LAYER))
    peft_model = attach_lora(model, layers=list(range(n)), rank=2)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
    adapter = adapter_dir(world_model.name, sae_tag(8, k), list(range(n)), 2)
    peft_model.save_pretrained(str(adapter))

    argv = ["--model", str(world_model), "--device", "cpu", "--dataset", "builtin", "--num_tokens", "1024"]
    argv += ["--ctx_len", "128", "--batch_size", "4", "--resamples", "200", "--progress", "false"]
    out = run_interp(parse(InterpArgs, argv))
    rec = json.loads(out.read_text())
    assert out.name == f"peft_0-{n - 1}_rank_2.json" and rec["adapter"] == str(adapter)
    record = read_record(out)  # its run record: the SAE's digest and the adapter's record
    assert record.kind == "interp_result" and record.get("sae_weights_digests")[0]
    assert record.get("adapter_identity") and find_records(world_model.name) == [out]
    assert rec["layers"] == list(range(SAE_LAYER, n)) and rec["num_sequences"] == 8
    for kind in ("layers", "token_loss"):
        png = (
            plots_dir() / f"{world_model.name}_interp_{kind}__{out.parent.name}__{out.stem}.png"
        )  # its result
        assert png.is_file() and png.stat().st_size > 5000

    # independent: the base model's distance at the SAE layer is the SAE's reconstruction error
    clean_model, _ = load_model(str(world_model), device="cpu")
    chunks = load_token_split("builtin", tokenizer, 128, 1024, 42).val
    with torch.no_grad():
        x = residual_at(clean_model, chunks, SAE_LAYER)
        err = (x - sae.reconstruct(x)).norm(dim=-1).mean().item()
    assert rec["l2"]["base"][0] == pytest.approx(err, rel=1e-4)
    assert rec["ce"]["clean"] == pytest.approx(mean_ce(clean_model, chunks, 4), rel=1e-5)
    with_sae = mean_ce(clean_model, chunks, 4, {SAE_LAYER: lambda h: sae.reconstruct(h)})
    assert rec["ce"]["sae"] == pytest.approx(with_sae, rel=1e-5)
    hist = rec["token_loss"]["histogram"]
    assert hist["n_tokens"] == 8 * 127
    counted = hist["unchanged"] + sum(
        sum(hist[side]) + hist[f"{side}_below_range"] + hist[f"{side}_above_range"]
        for side in ("improved", "degraded")
    )
    assert counted == hist["n_tokens"]  # every token counted once
    table = capsys.readouterr().out
    assert "Δ L2" in table and "CE gap closed" in table
