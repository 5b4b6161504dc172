"""results.csv's `sae_l0` (issue 28, loose end 2): a plain TopK SAE's L0 is its k (exact: k latents per
token); every dictionary whose inference L0 is not fixed (BatchTopK and Matryoshka fire above a
threshold at inference, JumpReLU above its per-latent thresholds, ReLU wherever positive) reports the
measured mean number of active latents per token on the validation chunks, checked here against a hand
count of pre-activations above the set thresholds."""

from __future__ import annotations

import pytest
import torch
from arch_helpers import make_dictionary
from conftest import make_tiny_model

from lorasae.lora.run import sae_l0

LAYER, D = 1, 32


@pytest.fixture(scope="module")
def model_and_chunks():
    model = make_tiny_model("llama", n_layers=3, d=D).eval()
    chunks = torch.randint(0, model.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(3))
    return model, chunks


def _residual(model, chunks):
    """The residual stream after decoder layer LAYER, from the model's own hidden states."""
    with torch.no_grad():
        return model(input_ids=chunks, output_hidden_states=True).hidden_states[LAYER + 1].reshape(-1, D)


def _hand_count(pre: torch.Tensor, theta: torch.Tensor) -> float:
    """Mean over tokens of the latents whose pre-activation exceeds its threshold θ (> 0)."""
    return float((pre > theta).sum(-1).double().mean())


@pytest.mark.parametrize("kind", ["batchtopk", "matryoshka"])
def test_batchtopk_l0_is_the_measured_count_above_its_threshold_not_k(model_and_chunks, kind):
    model, chunks = model_and_chunks
    sae = make_dictionary(kind, D, LAYER)
    with torch.no_grad():
        sae.threshold.fill_(0.2)
        x = _residual(model, chunks)
        pre = (x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias
    expected = _hand_count(pre, torch.tensor(0.2))
    assert expected != sae.cfg.k  # the threshold's L0 is not the training average k
    assert sae_l0(sae, model, LAYER, chunks) == pytest.approx(expected, abs=1e-9)


def test_jumprelu_l0_is_the_measured_count_above_its_per_latent_thresholds(model_and_chunks):
    model, chunks = model_and_chunks
    sae = make_dictionary("jumprelu", D, LAYER)
    theta = torch.linspace(0.01, 0.6, sae.cfg.d_sae)
    with torch.no_grad():
        sae.log_threshold.copy_(theta.log())
        pre = _residual(model, chunks) @ sae.W_enc + sae.b_enc  # the paper's encoder reads x
    assert not sae.cfg.apply_b_dec_to_input
    assert sae_l0(sae, model, LAYER, chunks) == pytest.approx(_hand_count(pre, theta), abs=1e-9)


def test_relu_l0_is_the_measured_count_of_positive_latents(model_and_chunks):
    model, chunks = model_and_chunks
    sae = make_dictionary("relu", D, LAYER)
    with torch.no_grad():
        pre = (_residual(model, chunks) - sae.b_dec) @ sae.W_enc + sae.b_enc
    assert sae_l0(sae, model, LAYER, chunks) == pytest.approx(_hand_count(pre, torch.tensor(0.0)), abs=1e-9)


def test_a_plain_topk_sae_reports_its_k(model_and_chunks):
    model, chunks = model_and_chunks
    sae = make_dictionary("topk", D, LAYER)
    assert sae_l0(sae, model, LAYER, chunks) == float(sae.cfg.k) == 4.0
