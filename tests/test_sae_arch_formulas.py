"""Issue 28's dictionaries (BatchTopK, Matryoshka, JumpReLU, (skip) transcoders) against their formulas
written out independently on small data: the batch selection, the threshold's moving average, the prefix
losses, the straight-through gradients, the L0 warm-up, the transcoder's output; and the registry's
round trip of each saved folder."""

from __future__ import annotations

import pytest
import torch

from lorasae.sae.batchtopk import BatchTopKConfig, BatchTopKSAE, batch_topk_select
from lorasae.sae.jumprelu import JumpReLUConfig, JumpReLUFunction, JumpReLUSAE, StepFunction, l0_coefficient
from lorasae.sae.matryoshka import MatryoshkaConfig, MatryoshkaSAE, matryoshka_loss
from lorasae.sae.registry import architecture_of, load_ours
from lorasae.sae.transcoder import Transcoder, TranscoderConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _perturb(module: torch.nn.Module, scale: float = 0.3) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def _batchtopk(seed: int = 0, cls=BatchTopKSAE, **kw) -> BatchTopKSAE:
    torch.manual_seed(seed)
    cfg_cls = MatryoshkaConfig if cls is MatryoshkaSAE else BatchTopKConfig
    sae = cls(cfg_cls(d_in=6, d_sae=20, k=3, hook_layer=1, **kw))
    _perturb(sae)
    return sae


@pytest.mark.parametrize("dominant", [False, True])
def test_batch_topk_keeps_exactly_k_times_batch_largest_over_the_whole_batch(dominant):
    torch.manual_seed(1)
    pre = torch.randn(9, 20) * torch.linspace(0.2, 3.0, 9)[:, None]  # tokens of very different scale
    if dominant:  # one token keeps more than its 4k candidates: the candidate set must grow
        pre[4] = pre[4].abs() + 50
    acts, idx = batch_topk_select(pre, k=3)
    dense = torch.zeros_like(pre).scatter(1, idx, acts)
    # independent: sort every (token, latent) value of ReLU(pre), keep the 27 largest
    order = sorted(
        ((float(v), n, i) for n, row in enumerate(pre.relu()) for i, v in enumerate(row)), reverse=True
    )
    expected = torch.zeros_like(pre)
    for v, n, i in order[: 3 * 9]:
        expected[n, i] = v
    torch.testing.assert_close(dense, expected)
    assert int((dense > 0).sum()) == 27
    counts = (dense > 0).sum(1)
    assert counts.min() < 3 < counts.max()  # per token it varies; only the batch total is k·B
    if dominant:
        assert int(counts[4]) == 20


@pytest.mark.parametrize("fast", [True, False])  # the fused TopK kernel with batch selection / unfused
def test_batchtopk_gradients_equal_the_dense_masked_reference(fast):
    sae = _batchtopk()
    sae.fast = fast
    x = torch.randn(16, 6) * 2
    out = sae(x)
    out.recon.backward()
    got = {n: p.grad.clone() for n, p in sae.named_parameters()}
    # reference: dense pre-activations, a mask of the batch's 48 largest, dense decode
    W_enc, b_enc = (
        sae.encoder.weight.detach().clone().requires_grad_(),
        sae.encoder.bias.detach().clone().requires_grad_(),
    )
    W_dec, b_dec = sae.W_dec.detach().clone().requires_grad_(), sae.b_dec.detach().clone().requires_grad_()
    pre = (x - b_dec) @ W_enc.t() + b_enc
    flat = pre.detach().relu().flatten()
    mask = torch.zeros_like(flat).scatter(0, flat.topk(48).indices, 1.0).view_as(pre)
    x_hat = (pre.relu() * mask) @ W_dec + b_dec
    fvu = (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    fvu.backward()
    assert out.fvu.item() == pytest.approx(fvu.item(), rel=1e-5)
    for name, ref in [("encoder.weight", W_enc), ("encoder.bias", b_enc), ("W_dec", W_dec), ("b_dec", b_dec)]:
        torch.testing.assert_close(got[name], ref.grad, rtol=1e-4, atol=1e-5)


def test_batchtopk_threshold_is_the_moving_average_of_the_smallest_kept_activation():
    sae = _batchtopk(threshold_lr=0.25)
    theta = 0.0
    for step in range(4):
        x = torch.randn(10, 6) * (1 + step)
        out = sae(x)
        smallest = float(out.top_acts.detach()[out.top_acts > 0].min())
        sae.after_step(out)
        theta = 0.75 * theta + 0.25 * smallest
        assert float(sae.threshold) == pytest.approx(theta, rel=1e-12)
    sae.update_threshold(torch.zeros(3, 4))  # nothing positive: unchanged
    assert float(sae.threshold) == pytest.approx(theta, rel=1e-12)


def test_batchtopk_inference_fires_latents_above_the_threshold_and_saves_it(tmp_path):
    sae = _batchtopk()
    sae.threshold.fill_(0.4)
    sae.eval()
    x = torch.randn(12, 6)
    pre = (x - sae.b_dec) @ sae.encoder.weight.t() + sae.encoder.bias
    expected = pre * (pre > 0.4)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), expected)
        torch.testing.assert_close(sae.reconstruct(x), expected @ sae.W_dec + sae.b_dec, rtol=1e-5, atol=1e-6)
    sae.save(tmp_path / "b", step=7)
    assert architecture_of(tmp_path / "b") == "batchtopk"
    back = load_ours(tmp_path / "b").eval()
    assert type(back) is BatchTopKSAE and float(back.threshold) == pytest.approx(0.4)
    assert back.cfg.k == 3 and back.cfg.hook_layer == 1
    with torch.no_grad():
        torch.testing.assert_close(back.reconstruct(x), sae.reconstruct(x))


def test_matryoshka_loss_is_the_hand_summed_prefix_losses(tmp_path):
    sae = _batchtopk(cls=MatryoshkaSAE, widths=[3, 8])
    assert sae.cfg.widths == [3, 8, 20]
    x = torch.randn(14, 6)
    out = sae(x)
    dense = torch.zeros(14, 20).scatter(1, out.top_idx, out.top_acts.detach())
    var = ((x - x.mean(0)) ** 2).sum()
    W_dec, b_dec = sae.W_dec.detach(), sae.b_dec.detach()
    total = 0.0
    for w in (3, 8, 20):
        recon = sum(dense[:, i : i + 1] * W_dec[i] for i in range(w)) + b_dec
        total += float(((x - recon) ** 2).sum() / var)
    assert out.recon.item() == pytest.approx(total, rel=1e-5)
    assert out.fvu.item() < out.recon.item()  # the prefixes add terms
    plain = matryoshka_loss(x, out.top_acts, out.top_idx, sae.W_dec, sae.b_dec, [20])
    assert plain.item() == pytest.approx(out.fvu.item(), rel=1e-5)
    sae.save(tmp_path / "m")
    assert architecture_of(tmp_path / "m") == "matryoshka"
    back = load_ours(tmp_path / "m")
    assert type(back) is MatryoshkaSAE and back.cfg.widths == [3, 8, 20]


def test_matryoshka_gradients_of_the_fused_and_unfused_paths_agree():
    grads = []
    x = torch.randn(14, 6)
    for fast in (True, False):
        sae = _batchtopk(cls=MatryoshkaSAE, widths=[3, 8])
        sae.fast = fast
        sae(x).recon.backward()
        grads.append({n: p.grad for n, p in sae.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-4, atol=1e-5)


def test_matryoshka_widths_must_increase():
    with pytest.raises(ValueError, match="increase strictly"):
        MatryoshkaConfig(d_in=4, d_sae=16, k=2, widths=[8, 4])


def test_jumprelu_gradients_are_the_papers_pseudo_derivatives():
    torch.manual_seed(2)
    eps = 0.2
    theta = torch.rand(5, dtype=torch.float64) * 0.5 + 0.05
    z = theta + 0.3 * torch.randn(7, 5, dtype=torch.float64)  # many within the kernel's ±eps/2
    g = torch.randn(7, 5, dtype=torch.float64)
    zz, tt = z.clone().requires_grad_(), theta.clone().requires_grad_()
    (JumpReLUFunction.apply(zz, tt, eps) * g).sum().backward()
    zs, ts = z.clone().requires_grad_(), theta.clone().requires_grad_()
    (StepFunction.apply(zs, ts, eps) * g).sum().backward()
    # the paper's formulas, element by element
    exp_z = torch.zeros_like(z)
    exp_t_jump = torch.zeros_like(theta)
    exp_t_step = torch.zeros_like(theta)
    for n in range(7):
        for i in range(5):
            u = (z[n, i] - theta[i]) / eps
            kernel = 1.0 if -0.5 < u < 0.5 else 0.0
            exp_z[n, i] = g[n, i] * (1.0 if z[n, i] > theta[i] else 0.0)
            exp_t_jump[i] += g[n, i] * -(theta[i] / eps) * kernel
            exp_t_step[i] += g[n, i] * -(1.0 / eps) * kernel
    assert 0 < int(((z - theta).abs() < eps / 2).sum()) < 35  # some inside the kernel, some outside
    torch.testing.assert_close(zz.grad, exp_z)
    torch.testing.assert_close(tt.grad, exp_t_jump)
    torch.testing.assert_close(ts.grad, exp_t_step)
    assert zs.grad is None  # the step passes nothing to z
    torch.testing.assert_close(JumpReLUFunction.apply(z, theta, eps), z * (z > theta))


def test_jumprelu_sae_threshold_learns_through_log_theta_and_penalties_match():
    torch.manual_seed(3)
    sae = JumpReLUSAE(JumpReLUConfig(d_in=6, d_sae=10, bandwidth=0.5, init_threshold=0.3), fast=False)
    _perturb(sae, 0.5)
    x = torch.randn(20, 6)
    out = sae(x)
    pre = (x @ sae.W_enc + sae.b_enc).detach()  # the paper's encoder reads x itself
    theta = sae.log_threshold.exp().detach()
    z = pre * (pre > theta)
    torch.testing.assert_close(out.top_acts.detach(), z)
    assert out.l1.item() == pytest.approx(float((pre > theta).sum(1).float().mean()))
    out.l1.backward()
    kernel = ((pre - theta).abs() / 0.5 < 0.5).double()
    expected = (-(1 / 0.5) * kernel).sum(0) / 20 * theta.double()  # d/dlogθ = θ · d/dθ, mean over tokens
    assert expected.abs().sum() > 0  # some pre-activations fall inside the kernel
    torch.testing.assert_close(sae.log_threshold.grad.double(), expected, rtol=1e-5, atol=1e-6)
    tanh = JumpReLUSAE(JumpReLUConfig(d_in=6, d_sae=10, sparsity_loss="tanh", tanh_scale=2.0), fast=False)
    _perturb(tanh, 0.5)
    out = tanh(x)
    expected_tanh = torch.tanh(2.0 * out.top_acts * tanh.W_dec.norm(dim=1)).sum(1).mean()
    assert out.l1.item() == pytest.approx(expected_tanh.item(), rel=1e-6)


@pytest.mark.parametrize("loss", ["step", "tanh"])
def test_jumprelu_sparse_decode_path_equals_the_dense_one(loss):
    grads, outs = [], []
    x = torch.randn(24, 8)
    for fast in (True, False):
        torch.manual_seed(7)
        cfg = JumpReLUConfig(d_in=8, d_sae=320, init_threshold=3.0, bandwidth=0.5, sparsity_loss=loss)
        sae = JumpReLUSAE(cfg, fast=fast)
        _perturb(sae, 0.3)
        with torch.no_grad():  # few latents fire (a trained SAE's sparsity), thresholds still differ
            sae.log_threshold.copy_(torch.linspace(1.2, 1.6, 320))
        out = sae(x)
        (out.recon + 0.1 * out.l1).backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in sae.named_parameters()})
    assert outs[0].top_acts.shape[1] < 320 == outs[1].top_acts.shape[1]  # the fast one decoded sparsely
    assert 0 < int((outs[0].top_acts > 0).sum()) == int((outs[1].top_acts > 0).sum())
    torch.testing.assert_close(outs[0].x_hat, outs[1].x_hat, rtol=1e-5, atol=1e-6)
    for name, grad in grads[0].items():
        assert grad is not None and grads[1][name] is not None
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-4, atol=1e-6)


def test_l0_coefficient_warms_up_linearly_from_zero():
    assert [l0_coefficient(s, 2.0, 4) for s in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert l0_coefficient(0, 3.0, 0) == 3.0


def test_jumprelu_saves_thresholds_and_loads_back(tmp_path):
    sae = JumpReLUSAE(JumpReLUConfig(d_in=6, d_sae=10, hook_layer=2, sparsity_loss="tanh"))
    _perturb(sae)
    sae.save(tmp_path / "j")
    assert architecture_of(tmp_path / "j") == "jumprelu"
    back = load_ours(tmp_path / "j")
    assert back.cfg.sparsity_loss == "tanh" and back.cfg.hook_layer == 2
    torch.testing.assert_close(back.threshold, sae.threshold)
    x = torch.randn(5, 6)
    with torch.no_grad():
        torch.testing.assert_close(back.reconstruct(x), sae.reconstruct(x))


@pytest.mark.parametrize("activation", ["relu", "topk"])
@pytest.mark.parametrize("skip", [False, True])
def test_transcoder_predicts_the_target_from_the_input(tmp_path, activation, skip):
    torch.manual_seed(4)
    cfg = TranscoderConfig(d_in=6, d_sae=16, d_out=5, activation=activation, k=3, skip=skip, hook_layer=1)
    tc = Transcoder(cfg)
    _perturb(tc)
    x, y = torch.randn(11, 6), torch.randn(11, 5) + 2
    out = tc(x, target=y)
    W_enc, b_enc, W_dec, b_dec = (t.detach() for t in (tc.W_enc, tc.b_enc, tc.W_dec, tc.b_dec))
    z = torch.clamp(x @ W_enc + b_enc, min=0)  # no b_dec on the input: it lives in the output space
    if activation == "topk":
        keep = z.topk(3, dim=1).indices
        z = torch.zeros_like(z).scatter(1, keep, z.gather(1, keep))
    y_hat = z @ W_dec + b_dec + (x @ tc.W_skip.detach().t() if skip else 0)
    fvu = ((y - y_hat) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    torch.testing.assert_close(out.x_hat.detach(), y_hat, rtol=1e-5, atol=1e-5)
    assert out.fvu.item() == pytest.approx(fvu.item(), rel=1e-5)
    if activation == "relu":
        assert out.l1.item() == pytest.approx((z * W_dec.norm(dim=1)).sum(1).mean().item(), rel=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(tc.reconstruct(x), y_hat, rtol=1e-5, atol=1e-5)
    assert tc.splice_site == "mlp"
    tc.save(tmp_path / "t")
    assert architecture_of(tmp_path / "t") == ("skip_transcoder" if skip else "transcoder")
    back = load_ours(tmp_path / "t")
    assert back.cfg.activation == activation and back.cfg.skip == skip and back.cfg.d_out == 5
    assert back.cfg.hook_name_out == "blocks.1.hook_mlp_out"
    with torch.no_grad():
        torch.testing.assert_close(back.reconstruct(x), tc.reconstruct(x))


@pytest.mark.parametrize("fast", [True, False])
def test_topk_skip_transcoder_gradients_equal_the_dense_reference(fast):
    torch.manual_seed(6)
    tc = Transcoder(TranscoderConfig(d_in=6, d_sae=16, activation="topk", k=3, skip=True), fast=fast)
    _perturb(tc)
    x, y = torch.randn(10, 6), torch.randn(10, 6) + 1
    out = tc(x, target=y)
    out.fvu.backward()
    ref = {n: p.detach().clone().requires_grad_() for n, p in tc.named_parameters()}
    pre = x @ ref["W_enc"] + ref["b_enc"]
    mask = torch.zeros_like(pre).scatter(1, pre.detach().topk(3, dim=1).indices, 1.0)
    y_hat = (pre.relu() * mask) @ ref["W_dec"] + ref["b_dec"] + x @ ref["W_skip"].t()
    (((y - y_hat) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()).backward()
    for name, p in tc.named_parameters():
        torch.testing.assert_close(p.grad, ref[name].grad, rtol=1e-4, atol=1e-5)


def test_transcoder_forward_without_target_says_what_to_pass():
    tc = Transcoder(TranscoderConfig(d_in=4, d_sae=8))
    with pytest.raises(ValueError, match="target="):
        tc(torch.randn(2, 4))


def test_transcoder_topk_auxk_is_zero_without_dead_latents_and_positive_with():
    torch.manual_seed(5)
    tc = Transcoder(TranscoderConfig(d_in=6, d_sae=16, activation="topk", k=2))
    _perturb(tc)
    x, y = torch.randn(9, 6), torch.randn(9, 6)
    assert tc(x, target=y).auxk_loss.item() == 0.0
    dead = torch.zeros(16, dtype=torch.bool)
    dead[:5] = True
    assert tc(x, dead_mask=dead, target=y).auxk_loss.item() > 0


def _train(sae, x, y=None, steps=60, coef=0.0):
    """The loop the trainer runs for every architecture: forward, recon + AuxK + coefficient · l1,
    backward, decoder constraint, Adam, after_step."""
    opt = torch.optim.Adam(sae.parameters(), lr=3e-3)
    first = last = None
    for _ in range(steps):
        out = sae(x, target=y) if y is not None else sae(x)
        loss = out.recon + coef * out.l1
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()
        sae.after_step(out)
        first = out.fvu.item() if first is None else first
        last = out.fvu.item()
    return first, last


def _sparse_data(n=256, d=8, atoms=24, seed=8):
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, d, generator=g)
    codes = torch.rand(n, atoms, generator=g) * (torch.rand(n, atoms, generator=g) < 0.1)
    return codes @ dictionary


@pytest.mark.parametrize("kind", ["batchtopk", "matryoshka", "jumprelu", "transcoder"])
def test_every_architecture_trains_through_the_common_step(kind):
    torch.manual_seed(9)
    x = _sparse_data()
    y = None
    if kind == "batchtopk":
        sae = BatchTopKSAE(BatchTopKConfig(d_in=8, d_sae=32, k=3, threshold_lr=0.1))
    elif kind == "matryoshka":
        sae = MatryoshkaSAE(MatryoshkaConfig(d_in=8, d_sae=32, k=3, widths=[8, 16], threshold_lr=0.1))
    elif kind == "jumprelu":
        sae = JumpReLUSAE(JumpReLUConfig(d_in=8, d_sae=32, bandwidth=0.05, init_threshold=0.05))
    else:
        sae = Transcoder(TranscoderConfig(d_in=8, d_sae=32, activation="topk", k=3, skip=True))
        y = torch.tanh(x) @ torch.randn(8, 8, generator=torch.Generator().manual_seed(1))
    first, last = _train(sae, x, y, coef=1e-3 if kind == "jumprelu" else 0.0)
    assert last < 0.7 * first
    if kind in ("batchtopk", "matryoshka"):
        assert float(sae.threshold) > 0
        sae.eval()
        with torch.no_grad():
            l0 = (sae.encode(x) > 0).sum(-1).float().mean().item()
        assert 2.0 < l0 < 4.5  # the inference threshold keeps about k = 3 latents per token (3.1 here)
