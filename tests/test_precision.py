"""`--dtype auto` and the CUDA precision paths (lorasae/core/precision.py), checked on the CPU: the choices per
device (CUDA faked where only the decision is tested), and the bf16-autocast SAE path against float32."""

from __future__ import annotations

import pytest
import torch
from conftest import make_char_tokenizer, make_tiny_model

from lorasae.core import precision
from lorasae.core.cli import CommonArgs
from lorasae.model.hooks import residual_at
from lorasae.model.load import load_model
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.train.objectives import reconstruction_step

pytestmark = pytest.mark.usefixtures("one_thread")

CUDA = torch.device("cuda:0")


@pytest.fixture
def fake_cuda(monkeypatch):
    """Decisions as on a bf16-capable GPU (no tensor is put on it)."""
    monkeypatch.setattr(precision, "parse_device", lambda device=None: CUDA)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def test_common_args_default_dtype_is_auto():
    assert CommonArgs().dtype == "auto"


def test_auto_is_float32_on_cpu_and_explicit_names_pass_through():
    assert precision.resolve_dtype("auto", "cpu") is torch.float32
    assert precision.resolve_dtype(None, "cpu") is torch.float32
    assert precision.resolve_dtype("bf16", "cpu") is torch.bfloat16
    assert precision.resolve_dtype("float32", "cpu") is torch.float32


def test_auto_is_bfloat16_on_cuda(fake_cuda):
    assert precision.resolve_dtype("auto", "cuda:0") is torch.bfloat16
    assert precision.resolve_dtype("float32", "cuda:0") is torch.float32  # the original's numerics


def test_tf32_only_on_cuda_under_auto(fake_cuda):
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:  # torch's backend flags are not plain attributes: set and restore them by hand
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        assert not precision.configure_matmul("cuda:0", "float32")
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert precision.configure_matmul("cuda:0", "auto")
        assert torch.backends.cuda.matmul.allow_tf32 is True and torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_tf32_stays_off_on_cpu():
    assert not precision.configure_matmul("cpu", "auto")


def test_gemma2_attention_stays_exact_and_others_get_the_default(fake_cuda, monkeypatch):
    monkeypatch.setattr(precision, "flash_attn_available", lambda: False)
    assert precision.attention_implementation("gemma2", "cuda:0") == "eager"
    monkeypatch.setattr(precision, "flash_attn_available", lambda: True)
    assert precision.attention_implementation("gemma2", "cuda:0") == "flash_attention_2"
    assert precision.attention_implementation("llama", "cuda:0") is None  # transformers' SDPA


def test_gemma2_attention_is_eager_on_cpu():
    assert precision.attention_implementation("gemma2", "cpu") == "eager"


def test_sae_autocast_only_for_bf16_models_on_cuda():
    assert precision.use_sae_autocast(CUDA, torch.bfloat16)
    assert not precision.use_sae_autocast(CUDA, torch.float32)
    assert not precision.use_sae_autocast(torch.device("cpu"), torch.bfloat16)


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_load_model_auto_on_cpu_is_the_float32_model(tmp_path, arch):
    make_tiny_model(arch).save_pretrained(tmp_path)
    make_char_tokenizer().save_pretrained(tmp_path)
    model, _ = load_model(str(tmp_path), "cpu", "auto")
    assert next(model.parameters()).dtype is torch.float32
    expected = "eager" if arch == "gemma2" else "sdpa"
    assert model.config._attn_implementation == expected


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def test_sae_under_bf16_autocast_matches_float32_within_bf16_tolerance():
    torch.manual_seed(0)
    sae = TopKSAE(SaeConfig(d_in=64, d_sae=512, k=8))
    x = torch.randn(256, 64) * 3 + 1
    ref = sae(x)
    ref.fvu.backward()
    ref_grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad(set_to_none=True)
    with precision.sae_autocast(torch.device("cpu"), True):
        out = sae(x)
    out.fvu.backward()
    assert all(p.dtype is torch.float32 and p.grad.dtype is torch.float32 for p in sae.parameters())
    assert out.top_acts.dtype is torch.float32  # the ReLU'd activations are cast back to the parameters'
    assert out.x_hat.dtype is torch.float32
    # near-ties between latents may swap under bf16 (the encoder GEMM carries ~8 mantissa bits): most
    # tokens keep the same latents, and on those the reconstruction agrees to bf16 precision
    same = (out.top_idx.sort(-1).values == ref.top_idx.sort(-1).values).all(-1)
    assert same.float().mean() > 0.7
    assert _rel(out.x_hat[same], ref.x_hat[same]) < 1e-2
    assert abs(float(out.fvu.detach()) - float(ref.fvu.detach())) < 2e-2 * float(ref.fvu.detach())
    for name, grad in ref_grads.items():  # swapped latents move a few decoder rows' gradients entirely
        cos = torch.nn.functional.cosine_similarity(sae.get_parameter(name).grad.flatten(), grad.flatten(), 0)
        assert cos > 0.98, (name, float(cos))


def test_training_objective_under_autocast_matches_float32_on_a_bf16_model():
    """The CUDA path's numerics (bf16 model, float32 SAE under bf16 autocast) against the original's
    (everything float32) on the same weights and tokens."""
    model = make_tiny_model("gemma2", n_layers=3, d=64)
    ids = torch.randint(4, 96, (4, 32))
    torch.manual_seed(1)
    sae = TopKSAE(SaeConfig(d_in=64, d_sae=256, k=8))
    sae.b_dec.data.copy_(residual_at(model, ids, 1).reshape(-1, 64).mean(0))
    loss32, out32, _ = reconstruction_step(model, sae, ids, 1, 0.0, None)
    model_bf16 = model.to(torch.bfloat16)
    with precision.sae_autocast(torch.device("cpu"), True):
        loss16, out16, _ = reconstruction_step(model_bf16, sae, ids, 1, 0.0, None)
    assert loss16.dtype is torch.float32
    assert abs(float(loss16.detach()) - float(loss32.detach())) < 3e-2 * float(loss32.detach())
    same = (out16.top_idx.sort(-1).values == out32.top_idx.sort(-1).values).all(-1)
    assert same.float().mean() > 0.5
    assert _rel(out16.x_hat[same], out32.x_hat[same]) < 3e-2  # bf16 residual stream and bf16 GEMMs
