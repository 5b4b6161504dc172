"""The crosscoder: against independent formulas, the two-separate-SAEs identity, and its folder format."""

from __future__ import annotations

import json

import pytest
import torch

from lorasae.sae import SaeConfig, TopKSAE
from lorasae.sae.crosscoder import Crosscoder, CrosscoderConfig
from lorasae.sae.io import SaeFormatError


def _block_crosscoder(d1: int, d2: int, m1: int, m2: int, activation: str, k: int | None, seed: int = 0):
    """A 2-source crosscoder whose first m1 latents only read/write source 0 and the other m2 only
    source 1 (cross terms zeroed), plus the weights of the two separate SAEs it should equal."""
    torch.manual_seed(seed)
    cc = Crosscoder(CrosscoderConfig(d_in=[d1, d2], d_sae=m1 + m2, k=k, activation=activation))
    w_enc = [torch.randn(d1, m1), torch.randn(d2, m2)]
    w_dec = [torch.randn(m1, d1), torch.randn(m2, d2)]
    b_enc = [torch.randn(m1) * 0.1, torch.randn(m2) * 0.1]
    b_dec = [torch.randn(d1), torch.randn(d2)]
    with torch.no_grad():
        cc.W_enc[0].zero_()
        cc.W_enc[1].zero_()
        cc.W_dec[0].zero_()
        cc.W_dec[1].zero_()
        cc.W_enc[0][:, :m1] = w_enc[0]
        cc.W_enc[1][:, m1:] = w_enc[1]
        cc.W_dec[0][:m1] = w_dec[0]
        cc.W_dec[1][m1:] = w_dec[1]
        cc.b_enc.copy_(torch.cat(b_enc))
        cc.b_dec[0].copy_(b_dec[0])
        cc.b_dec[1].copy_(b_dec[1])
    return cc, w_enc, w_dec, b_enc, b_dec


def test_relu_crosscoder_with_zeroed_cross_terms_equals_two_separate_relu_saes():
    cc, w_enc, w_dec, b_enc, b_dec = _block_crosscoder(6, 5, 10, 7, "relu", None)
    xs = [torch.randn(32, 6), torch.randn(32, 5)]
    out = cc(xs, sparsity_coef=0.3)
    for s in range(2):  # a vanilla SAE per source, written out by hand
        z = torch.relu((xs[s] - b_dec[s]) @ w_enc[s] + b_enc[s])
        x_hat = z @ w_dec[s] + b_dec[s]
        torch.testing.assert_close(out.x_hat[s], x_hat)
        fvu = (x_hat - xs[s]).pow(2).sum() / (xs[s] - xs[s].mean(0)).pow(2).sum()
        torch.testing.assert_close(out.fvu[s], fvu)
    z_all = torch.cat([torch.relu((xs[s] - b_dec[s]) @ w_enc[s] + b_enc[s]) for s in range(2)], dim=1)
    l1 = (z_all * torch.cat([w_dec[0].norm(dim=1), w_dec[1].norm(dim=1)])).sum(1).mean()
    torch.testing.assert_close(out.loss, out.fvu.sum() + 0.3 * l1)


def test_topk_crosscoder_with_zeroed_cross_terms_equals_two_separate_topk_saes_in_the_dense_limit():
    """With k = all latents, TopK keeps every positive latent in each block: two lorasae TopKSAEs."""
    m1, m2 = 8, 6
    cc, w_enc, w_dec, b_enc, b_dec = _block_crosscoder(5, 4, m1, m2, "topk", m1 + m2)
    xs = [torch.randn(16, 5), torch.randn(16, 4)]
    x_hat = cc.reconstruct(xs)
    for s, m in enumerate((m1, m2)):
        sae = TopKSAE(SaeConfig(d_in=xs[s].shape[1], d_sae=m, k=m), fast=False)
        with torch.no_grad():
            sae.encoder.weight.copy_(w_enc[s].t())
            sae.encoder.bias.copy_(b_enc[s])
            sae.W_dec.copy_(w_dec[s])
            sae.b_dec.copy_(b_dec[s])
        torch.testing.assert_close(x_hat[s], sae.reconstruct(xs[s]))


def test_one_source_topk_crosscoder_equals_a_topk_sae_with_the_same_weights():
    torch.manual_seed(1)
    sae = TopKSAE(SaeConfig(d_in=8, d_sae=32, k=3))
    with torch.no_grad():
        sae.encoder.bias.normal_()
        sae.b_dec.normal_()
    cc = Crosscoder(CrosscoderConfig(d_in=[8], d_sae=32, k=3))
    with torch.no_grad():
        cc.W_enc[0].copy_(sae.W_enc)
        cc.b_enc.copy_(sae.b_enc)
        cc.W_dec[0].copy_(sae.W_dec)
        cc.b_dec[0].copy_(sae.b_dec)
    x = torch.randn(20, 8)
    torch.testing.assert_close(cc.encode([x]), sae.encode(x))
    torch.testing.assert_close(cc.reconstruct([x])[0], sae.reconstruct(x), rtol=1e-5, atol=1e-5)
    assert int((cc.encode([x]) > 0).sum(1).max()) <= 3


def test_decoder_rows_have_joint_unit_norm_across_sources():
    cc = Crosscoder(CrosscoderConfig(d_in=[4, 7, 3], d_sae=12, k=2))
    torch.testing.assert_close(cc.decoder_norms().pow(2).sum(0), torch.ones(12))


def test_save_and_load_round_trip_keeps_weights_and_provenance(tmp_path):
    torch.manual_seed(0)
    cfg = CrosscoderConfig(
        d_in=[4, 6],
        d_sae=10,
        k=2,
        sources=["pre", "post"],
        model_names=["m/step_100", "m/final"],
        hook_layers=[0, 0],
    )
    cc = Crosscoder(cfg)
    folder = cc.save(tmp_path / "cc", step=5)
    raw = json.loads((folder / "cfg.json").read_text())
    assert (
        raw["architecture"] == "crosscoder"
        and raw["d_in"] == [4, 6]
        and raw["metadata"]["lorasae"]["step"] == 5
    )
    loaded = Crosscoder.load(folder)
    assert loaded.cfg == cc.cfg
    xs = [torch.randn(3, 4), torch.randn(3, 6)]
    for a, b in zip(loaded.reconstruct(xs), cc.reconstruct(xs)):
        torch.testing.assert_close(a, b)


def test_loading_a_plain_sae_folder_as_a_crosscoder_fails_clearly(tmp_path):
    TopKSAE(SaeConfig(d_in=4, d_sae=8, k=2)).save(tmp_path / "sae")
    with pytest.raises(SaeFormatError, match="not a crosscoder"):
        Crosscoder.load(tmp_path / "sae")


def test_wrong_source_count_or_width_is_refused():
    cc = Crosscoder(CrosscoderConfig(d_in=[4, 6], d_sae=10, k=2))
    with pytest.raises(ValueError, match="expected 2 sources"):
        cc.encode([torch.randn(2, 4)])
    with pytest.raises(ValueError, match="width 5"):
        cc.encode([torch.randn(2, 4), torch.randn(2, 5)])
