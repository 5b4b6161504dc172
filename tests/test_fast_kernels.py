"""The performance kernels: pruned top-k, the fused SAE function, the scratch buffer, the lean chunk KL."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lorasae.kl import lean_chunk_kl, naive_kl
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.sae.fused_sae import LatentGroups, fused_topk_sae
from lorasae.sae.select import topk_select
from lorasae.sae.workspace import release_scratch, scratch


@pytest.mark.parametrize(
    ("n", "m", "k"), [(50, 8192, 32), (40, 1024, 8), (30, 4096, 64), (20, 2048, 1), (9, 64, 4)]
)
def test_topk_select_is_exact(n: int, m: int, k: int) -> None:
    torch.manual_seed(m + k)
    z = torch.randn(n, m)
    z[0, : 2 * k] = 5.0 + torch.arange(2 * k)  # many winners in neighbouring latents
    z[1, ::97] = 9.0  # and in one strided group
    vals, idx = topk_select(z, k)
    ref = z.topk(k, dim=-1).values
    torch.testing.assert_close(vals.sort(-1).values, ref.sort(-1).values, rtol=0, atol=0)
    assert torch.equal(z.gather(1, idx), vals)
    assert torch.all(idx.sort(-1).values.diff(dim=-1) > 0)  # k distinct latents


def test_topk_select_ties_and_infinities() -> None:
    z = torch.zeros(3, 8192)
    z[1, 100:] = float("-inf")
    vals, idx = topk_select(z, 32)
    assert torch.all(vals == 0) and torch.all(idx.sort(-1).values.diff(dim=-1) > 0)
    assert torch.all(idx[1] < 100)


def _reference(x, b_dec, W_enc, b_enc, W_dec, idx):
    """Dense autograd reference for the latents ``idx`` (the selection itself has no gradient)."""
    z = (x - b_dec) @ W_enc.t() + b_enc
    acts = z.gather(1, idx).relu()
    dense = torch.zeros_like(z).scatter(1, idx, acts)
    return dense @ W_dec + b_dec, acts


@pytest.mark.parametrize(("n", "d", "m", "k"), [(37, 16, 64, 4), (120, 32, 2048, 32), (64, 24, 1024, 8)])
@pytest.mark.parametrize("x_grad", [False, True])
def test_fused_sae_matches_dense_reference(n: int, d: int, m: int, k: int, x_grad: bool) -> None:
    torch.manual_seed(n)
    dt = torch.float64
    x = torch.randn(n, d, dtype=dt)
    x[::3] *= 0.01  # these tokens have (almost) no positive pre-activation: the ReLU gate matters
    x.requires_grad_(x_grad)
    b_dec = (0.1 * torch.randn(d, dtype=dt)).requires_grad_()
    W_enc = torch.randn(m, d, dtype=dt).div_(d**0.5).requires_grad_()
    b_enc = (0.3 * torch.randn(m, dtype=dt) - 1.0).requires_grad_()  # some selected latents are <= 0
    W_dec = torch.randn(m, d, dtype=dt).requires_grad_()
    probe, probe_acts = torch.randn(n, d, dtype=dt), torch.randn(n, k, dtype=dt)
    params = [b_dec, W_enc, b_enc, W_dec] + ([x] if x_grad else [])

    x_hat, acts, idx = fused_topk_sae(x, b_dec, W_enc, b_enc, W_dec, k)
    ((x_hat * probe).sum() + (acts * probe_acts).sum()).backward()
    got = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    z = (x - b_dec) @ W_enc.t() + b_enc
    torch.testing.assert_close(acts.sort(-1).values, z.topk(k).values.relu().sort(-1).values)
    assert (acts == 0).any()  # the ReLU gate is exercised
    ref_hat, ref_acts = _reference(x, b_dec, W_enc, b_enc, W_dec, idx)
    torch.testing.assert_close(x_hat, ref_hat)
    torch.testing.assert_close(acts, ref_acts)
    ((ref_hat * probe).sum() + (ref_acts * probe_acts).sum()).backward()
    for name, g, p in zip(["b_dec", "W_enc", "b_enc", "W_dec", "x"], got, params):
        torch.testing.assert_close(g, p.grad, msg=name)


def test_fused_sae_gradcheck() -> None:
    torch.manual_seed(0)
    dt = torch.float64
    args = [torch.randn(6, 5, dtype=dt), 0.1 * torch.randn(5, dtype=dt), torch.randn(12, 5, dtype=dt),
            torch.randn(12, dtype=dt), torch.randn(12, 5, dtype=dt)]  # fmt: skip
    args = [a.requires_grad_() for a in args]
    assert torch.autograd.gradcheck(lambda *a: fused_topk_sae(*a, 3)[0], args)
    assert torch.autograd.gradcheck(lambda *a: fused_topk_sae(*a, 3)[1], args)


def test_sae_forward_uses_fused_path_and_matches_dense_at_width() -> None:
    torch.manual_seed(1)
    sae = TopKSAE(SaeConfig(d_in=32, d_sae=2048, k=16), dtype=torch.float64)
    x = torch.randn(200, 32, dtype=torch.float64)
    grads = {}
    for fast in (True, False):
        sae.fast = fast
        sae.zero_grad(set_to_none=True)
        out = sae(x)
        out.fvu.backward()
        grads[fast] = (out.fvu.detach(), {n: p.grad.clone() for n, p in sae.named_parameters()})
    torch.testing.assert_close(grads[True][0], grads[False][0])
    for name, g in grads[True][1].items():
        torch.testing.assert_close(g, grads[False][1][name], msg=name)


def test_fused_sae_bf16_and_autocast_run() -> None:
    torch.manual_seed(2)
    sae = TopKSAE(SaeConfig(d_in=16, d_sae=1024, k=8), dtype=torch.bfloat16)
    sae(torch.randn(40, 16)).fvu.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in sae.parameters())
    sae32 = TopKSAE(SaeConfig(d_in=16, d_sae=1024, k=8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sae32(torch.randn(40, 16))
    out.fvu.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in sae32.parameters())


def test_latent_groups_helpers() -> None:
    torch.manual_seed(3)
    n, k, m, d = 9, 3, 11, 4
    idx = torch.stack([torch.randperm(m)[:k] for _ in range(n)])
    w, src, rows = torch.randn(n, k), torch.randn(n, d), torch.randn(m, d)
    g = LatentGroups(idx, m)
    dense_w = torch.zeros(n, m).scatter(1, idx, w)
    torch.testing.assert_close(g.row_sums(src, g.gather(w)), dense_w.t() @ src)
    torch.testing.assert_close(g.latent_sums(g.gather(w)), dense_w.sum(0))
    torch.testing.assert_close(g.scatter(g.gather(w)), w)
    torch.testing.assert_close(g.scatter(g.rowdot(src, rows)), (src @ rows.t()).gather(1, idx))
    assert torch.all(g.latents.diff() >= 0)


def test_scratch_buffer_is_reused() -> None:
    release_scratch()
    a = scratch((4, 8), torch.float32, torch.device("cpu"))
    b = scratch((2, 8), torch.float32, torch.device("cpu"))
    assert b.data_ptr() == a.data_ptr() and b.shape == (2, 8)
    c = scratch((4, 8), torch.float64, torch.device("cpu"))
    assert c.dtype == torch.float64
    release_scratch()


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("with_bias", [False, True])
def test_lean_chunk_kl_matches_naive(softcap: float | None, with_bias: bool) -> None:
    torch.manual_seed(4)
    rows, d, vocab = 7, 8, 50
    weight = torch.randn(vocab, d)
    bias = torch.randn(vocab) if with_bias else None
    base = torch.randn(rows, d)
    student = (base + 0.3 * torch.randn(rows, d)).requires_grad_()

    def logits(h: torch.Tensor) -> torch.Tensor:
        z = F.linear(h, weight, bias)
        return torch.tanh(z / softcap) * softcap if softcap else z

    reference = naive_kl(logits(student)[None], logits(base)[None])  # batchmean over 1 sequence
    reference.backward()
    kl, grad = lean_chunk_kl(student.detach(), base, weight, bias, softcap, want_grad=True)
    torch.testing.assert_close(kl.float(), reference.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, student.grad, rtol=1e-4, atol=1e-6)
    kl_only, none = lean_chunk_kl(student.detach(), base, weight, bias, softcap, want_grad=False)
    assert none is None and torch.equal(kl_only, kl)


def test_rowdot_ignores_dirty_memory() -> None:
    """The sampled_addmm pattern's values must be zeros: with beta=0 torch still multiplies them, so NaN
    left in recycled memory reached the gradient (a random NaN during SAE training)."""
    torch.manual_seed(5)
    n, k, m, d = 64, 4, 256, 8
    idx = torch.stack([torch.randperm(m)[:k] for _ in range(n)])
    groups = LatentGroups(idx, m)
    a, rows = torch.randn(n, d), torch.randn(m, d)
    expected = (a @ rows.t()).gather(1, idx)
    for _ in range(20):
        junk = torch.full((n * k,), float("nan"))  # freed just before the kernel allocates the same size
        del junk
        torch.testing.assert_close(groups.scatter(groups.rowdot(a, rows)), expected)
