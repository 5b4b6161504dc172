"""TopKSAE: init (SPEC §3.1), shapes, L0, FVU/AuxK, and fast sparse path == dense reference."""

from __future__ import annotations

import pytest
import torch

from lorasae.sae import SaeConfig, TopKSAE, geometric_median
from lorasae.sae.kernels import _rowdot_gather, sampled_rowdot, scatter_rows, sparse_decode, topk_encode


def make_sae(
    d: int = 16, m: int = 64, k: int = 4, dtype: torch.dtype = torch.float64, seed: int = 0
) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SaeConfig(d_in=d, d_sae=m, k=k, hook_layer=3), dtype=dtype)
    with torch.no_grad():  # move away from the symmetric init so every parameter matters
        sae.b_dec.normal_(0, 0.1)
        sae.encoder.bias.normal_(0, 0.1)
        sae.W_dec.add_(0.3 * torch.randn_like(sae.W_dec))
    return sae


def test_init_follows_spec() -> None:
    torch.manual_seed(0)
    sae = TopKSAE(SaeConfig(d_in=12, d_sae=48, k=3))
    assert sae.encoder.weight.shape == (48, 12) and sae.W_dec.shape == (48, 12)
    assert sae.W_enc.shape == (12, 48) and sae.dtype == torch.float32
    assert torch.all(sae.encoder.bias == 0) and torch.all(sae.b_dec == 0)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(48))
    rows = sae.encoder.weight / sae.encoder.weight.norm(dim=1, keepdim=True)
    torch.testing.assert_close(sae.W_dec.data, rows)
    assert (
        sae.cfg.hook_name is None and SaeConfig(4, 8, 2, hook_layer=5).hook_name == "blocks.5.hook_resid_post"
    )


def test_config_validation_and_roundtrip() -> None:
    cfg = SaeConfig.from_expansion(32, 8, 4, model_name="tiny", hook_layer=1, dtype="bf16")
    assert cfg.d_sae == 256 and cfg.expansion_factor == 8 and cfg.dtype == "bfloat16"
    assert SaeConfig.from_dict({**cfg.to_dict(), "unrelated": 1}) == cfg
    with pytest.raises(ValueError, match="exceeds"):
        SaeConfig(4, 8, 9)


@pytest.mark.parametrize("fast", [True, False])
def test_shapes_and_l0_is_k(fast: bool) -> None:
    sae = make_sae(dtype=torch.float32)
    sae.fast = fast
    x = torch.randn(2, 5, 16)
    out = sae(x)
    assert out.x_hat.shape == x.shape and out.top_acts.shape == (2, 5, 4) and out.top_idx.shape == (2, 5, 4)
    z = sae.encode(x)
    assert z.shape == (2, 5, 64)
    assert torch.all((z != 0).sum(-1) == 4)  # L0 == k on every token
    assert torch.all(out.top_idx.sort(-1).values.diff(dim=-1) > 0)  # k distinct latents
    torch.testing.assert_close(sae.reconstruct(x), out.x_hat)
    torch.testing.assert_close(sae.decode(z), out.x_hat)
    torch.testing.assert_close(sae.decode_topk(out.top_acts, out.top_idx), out.x_hat)
    assert out.auxk_loss.item() == 0.0


def test_fvu_definition() -> None:
    sae = make_sae()
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    out = sae(x)
    flat = x.reshape(-1, 16)
    expected = (out.x_hat.reshape(-1, 16) - flat).pow(2).sum() / (flat - flat.mean(0)).pow(2).sum()
    torch.testing.assert_close(out.fvu, expected)


def _grads(sae: TopKSAE, x: torch.Tensor, probe: torch.Tensor, dead_mask: torch.Tensor | None):
    sae.zero_grad(set_to_none=True)
    xx = x.clone().requires_grad_(True)
    out = sae(xx, dead_mask=dead_mask)
    loss = out.fvu + 0.5 * out.auxk_loss + (out.x_hat * probe).sum() + out.top_acts.pow(2).sum()
    loss.backward()
    params = {n: p.grad.clone() for n, p in sae.named_parameters()}
    return out, {**params, "x": xx.grad.clone()}


@pytest.mark.parametrize("aux", [False, True])
@pytest.mark.parametrize("bias_shift", [0.0, -2.0])  # -2: many tokens have < k positive latents
def test_fast_path_matches_dense_reference(aux: bool, bias_shift: float) -> None:
    sae = make_sae()
    with torch.no_grad():
        sae.encoder.bias += bias_shift
    x = torch.randn(4, 6, 16, dtype=torch.float64)
    probe = torch.randn_like(x)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True
    mask = dead if aux else None
    sae.fast = False
    ref_out, ref = _grads(sae, x, probe, mask)
    sae.fast = True
    out, got = _grads(sae, x, probe, mask)
    assert torch.equal(out.top_idx, ref_out.top_idx)
    for a, b in zip(out, ref_out):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert (out.auxk_loss > 0) == aux
    assert set(got) == {"encoder.weight", "encoder.bias", "W_dec", "b_dec", "x"}
    for name in got:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-10, atol=1e-12, msg=name)
    if bias_shift:
        assert (out.top_acts == 0).any()  # the ReLU gate on selected latents was exercised


def test_encoder_grad_touches_only_selected_latents() -> None:
    sae = make_sae()
    x = torch.randn(3, 16, dtype=torch.float64)
    out = sae(x)
    out.fvu.backward()
    selected = torch.zeros(64, dtype=torch.bool)
    selected[out.top_idx.reshape(-1)] = True
    assert torch.all(sae.encoder.weight.grad[~selected] == 0) and torch.all(sae.W_dec.grad[~selected] == 0)
    assert sae.encoder.weight.grad[selected].abs().sum() > 0


def test_kernels_gradcheck() -> None:
    torch.manual_seed(1)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(10, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: topk_encode(x, w, b, 3)[0], (x, w, b))
    idx = torch.stack([torch.randperm(10)[:3] for _ in range(5)])
    acts = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: sparse_decode(a, idx, w), (acts, w))


def test_kernel_helpers_match_dense() -> None:
    torch.manual_seed(2)
    a, rows = torch.randn(7, 5, dtype=torch.float64), torch.randn(11, 5, dtype=torch.float64)
    idx = torch.stack([torch.randperm(11)[:4] for _ in range(7)])
    expected = (a @ rows.t()).gather(1, idx)
    torch.testing.assert_close(sampled_rowdot(a, rows, idx), expected)
    torch.testing.assert_close(_rowdot_gather(a, rows, idx, chunk=3), expected)
    w = torch.randn(7, 4, dtype=torch.float64)
    dense_w = torch.zeros(7, 11, dtype=torch.float64).scatter(1, idx, w)
    torch.testing.assert_close(scatter_rows(idx, w, a, 11), dense_w.t() @ a)


def test_bfloat16_fast_path_runs() -> None:
    sae = make_sae(dtype=torch.bfloat16)
    x = torch.randn(8, 16)
    out = sae(x)
    assert out.x_hat.dtype == torch.bfloat16
    out.fvu.backward()
    assert sae.W_dec.grad is not None and sae.encoder.weight.grad is not None


def test_decoder_norm_and_parallel_gradient_removal() -> None:
    sae = make_sae()
    sae.set_decoder_norm_to_unit_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64, dtype=torch.float64))
    sae(torch.randn(10, 16, dtype=torch.float64)).fvu.backward()
    sae.remove_gradient_parallel_to_decoder_directions()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(1)
    torch.testing.assert_close(parallel, torch.zeros_like(parallel))


def test_auxk_trains_dead_latents_only() -> None:
    sae = make_sae()
    x = torch.randn(6, 16, dtype=torch.float64)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[40:] = True
    out = sae(x, dead_mask=dead)
    sae.zero_grad()
    out.auxk_loss.backward()
    g = sae.W_dec.grad
    assert torch.all(g[:40] == 0) and g[40:].abs().sum() > 0
    assert sae(x, dead_mask=torch.zeros(64, dtype=torch.bool)).auxk_loss.item() == 0.0


def test_geometric_median() -> None:
    pts = torch.tensor([[0.0], [1.0], [2.0], [10.0], [100.0]])
    assert abs(geometric_median(pts).item() - 2.0) < 1e-3
    torch.manual_seed(0)
    x = torch.randn(200, 3, dtype=torch.float64)
    x[:20] += 50.0  # outliers pull the mean, not the median
    gm = geometric_median(x, max_iter=500)

    def cost(p: torch.Tensor) -> float:
        return (x - p).norm(dim=1).sum().item()

    assert gm.norm() < 1.0 < x.mean(0).norm()
    for _ in range(20):
        assert cost(gm) <= cost(gm + 1e-2 * torch.randn(3, dtype=torch.float64)) + 1e-9


@pytest.mark.parametrize("aux", [False, True])
def test_fast_path_under_autocast(aux: bool) -> None:
    sae = make_sae(dtype=torch.float32)
    x = torch.randn(2, 6, 16, requires_grad=True)
    dead = torch.ones(64, dtype=torch.bool) if aux else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sae(x, dead_mask=dead)
        (out.fvu + out.auxk_loss).backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
    for name, p in sae.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name


def test_frozen_sae_passes_gradient_to_input() -> None:
    sae = make_sae().requires_grad_(False)
    x = torch.randn(5, 16, dtype=torch.float64, requires_grad=True)
    sae.reconstruct(x).pow(2).sum().backward()
    sae.fast = False
    x_ref = x.detach().clone().requires_grad_(True)
    sae.reconstruct(x_ref).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
