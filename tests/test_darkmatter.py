"""Dark-matter analyses against independent computations on small random data (SPEC §7, issue 15 item 5)."""

import numpy as np
import pytest
import torch

from lorasae.darkmatter.info import SAEInfo
from lorasae.darkmatter.linear import (
    analyze_linear,
    fit_linear,
    r2,
    split_error,
    token_identity_r2,
    train_test_rows,
)
from lorasae.darkmatter.powerlaw import fit_power_law
from lorasae.darkmatter.pursuit import gradient_pursuit
from lorasae.darkmatter.synthetic import make_synthetic, validate


def _np_lstsq(x: np.ndarray, y: np.ndarray, bias: bool) -> tuple[np.ndarray, np.ndarray]:
    design = np.hstack([x, np.ones((len(x), 1))]) if bias else x
    sol = np.linalg.lstsq(design, y, rcond=None)[0]
    return (sol[:-1], sol[-1]) if bias else (sol, np.zeros(y.shape[1]))


def _np_r2_mean(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([1 - ((y[:, j] - pred[:, j]) ** 2).sum() / ((y[:, j] - y[:, j].mean()) ** 2).sum()
                          for j in range(y.shape[1])]))  # fmt: skip


@pytest.fixture
def random_info():
    """Activations with an error that is part linear in x, part independent noise, offset by a bias."""
    g = torch.Generator().manual_seed(0)
    n, d = 3000, 12
    x = torch.randn(n, d, generator=g) * torch.linspace(0.5, 2, d)
    A = torch.randn(d, d, generator=g) * 0.3
    e = x @ A + 0.7 + 0.5 * torch.randn(n, d, generator=g)
    return SAEInfo.from_arrays(x, x - e, torch.relu(torch.randn(n, 40, generator=g) - 1.5))


@pytest.mark.parametrize("bias", [True, False])
def test_fit_linear_and_r2_match_numpy_least_squares(random_info, bias):
    x, e = random_info.x.double().numpy(), random_info.error.double().numpy()
    W, b = _np_lstsq(x[:2000], e[:2000], bias)
    lin = fit_linear(random_info.x[:2000], random_info.error[:2000], bias=bias)
    np.testing.assert_allclose(lin.W.numpy(), W, atol=1e-8)
    np.testing.assert_allclose(lin.b.numpy(), b, atol=1e-8)
    pred = x[2000:] @ W + b
    assert r2(random_info.error[2000:], torch.from_numpy(pred)) == pytest.approx(
        _np_r2_mean(e[2000:], pred), abs=1e-10
    )


@pytest.mark.parametrize("split", ["random", "contiguous"])
def test_analyze_linear_r2_and_fvus_match_numpy(random_info, split):
    x, e = random_info.x.double().numpy(), random_info.error.double().numpy()
    x_hat = x - e
    report, _ = analyze_linear(random_info, train_fraction=0.5, split=split, seed=5)
    tr, te = (t.numpy() for t in train_test_rows(len(x), 0.5, split, seed=5))
    assert report.split == split and (report.n_train, report.n_test) == (1500, 1500)
    W, b = _np_lstsq(x[tr], e[tr], bias=True)
    W0, _ = _np_lstsq(x[tr], e[tr], bias=False)
    lin_test = x[te] @ W + b
    var = ((x[te] - x[te].mean(0)) ** 2).sum()
    assert report.vector_r2 == pytest.approx(_np_r2_mean(e[te], lin_test), abs=1e-6)
    assert report.vector_r2_no_bias == pytest.approx(_np_r2_mean(e[te], x[te] @ W0), abs=1e-6)
    assert report.fvu == pytest.approx(((e[te]) ** 2).sum() / var, rel=1e-5)
    assert report.nonlinear_fvu == pytest.approx(((x[te] - x_hat[te] - lin_test) ** 2).sum() / var, rel=1e-5)
    assert report.linear_fvu == pytest.approx((lin_test**2).sum() / var, rel=1e-5)
    norm2 = (e**2).sum(1, keepdims=True)
    Wn, bn = _np_lstsq(x[tr], norm2[tr], bias=True)
    assert report.norm_r2 == pytest.approx(_np_r2_mean(norm2[te], x[te] @ Wn + bn), abs=1e-6)
    # an error with a linear part and a bias: the bias matters, and R² is between the two extremes
    assert 0.2 < report.vector_r2 < 0.95 and report.vector_r2 > report.vector_r2_no_bias


def test_default_split_holds_out_tokens_drawn_at_random_with_the_seed():
    """The original permutes the tokens before it fits (run_lstsq); the held-out rows used to be the last
    half of the record, i.e. the last chunks only."""
    tr, te = train_test_rows(1000, 0.5, seed=1)
    assert len(tr) == len(te) == 500 and torch.equal(torch.cat([tr, te]).sort().values, torch.arange(1000))
    assert te.min() < 50 and tr.max() > 950  # both halves reach over the whole record
    assert (te < 500).sum() == pytest.approx(250, abs=50)  # about half the held-out rows in the first half
    assert all(torch.equal(a, b) for a, b in zip((tr, te), train_test_rows(1000, 0.5, seed=1)))
    assert not torch.equal(te, train_test_rows(1000, 0.5, seed=2)[1])
    tr_c, te_c = train_test_rows(1000, 0.3, split="contiguous")
    assert torch.equal(tr_c, torch.arange(300)) and torch.equal(te_c, torch.arange(300, 1000))
    with pytest.raises(ValueError, match="contiguous"):
        train_test_rows(1000, 0.5, split="sorted")


def test_linear_plus_nonlinear_split_sums_to_the_error(random_info):
    lin = fit_linear(random_info.x, random_info.error)
    split = split_error(random_info.x, random_info.error, lin)
    torch.testing.assert_close(split.linear + split.nonlinear, random_info.error, rtol=0, atol=1e-6)
    # least squares: in-sample the nonlinear part is orthogonal to x (and to the constant)
    assert (random_info.x.double().T @ split.nonlinear.double()).abs().max() < 1e-2
    assert split.nonlinear.double().mean(0).abs().max() < 1e-4


def test_token_identity_baseline_is_the_per_token_mean():
    tokens_tr, tokens_te = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 3])
    y_tr, y_te = torch.tensor([1.0, 3.0, 10.0, 12.0, 5.0]), torch.tensor([2.5, 11.0, 6.0])
    pred = np.array([2.0, 11.0, y_tr.mean().item()])  # token 3 never seen: the train mean
    expected = 1 - ((y_te.numpy() - pred) ** 2).sum() / ((y_te.numpy() - y_te.numpy().mean()) ** 2).sum()
    assert token_identity_r2(tokens_tr, y_tr, tokens_te, y_te) == pytest.approx(expected)


@pytest.mark.parametrize(("c", "a", "m"), [(0.1, 2.0, -0.5), (0.02, 40.0, -0.9), (0.3, 0.5, -0.2)])
def test_power_law_fit_recovers_known_parameters(c, a, m):
    widths = 2.0 ** np.arange(10, 21)
    fit = fit_power_law(widths, c + a * widths**m)
    assert (fit.c, fit.a, fit.m) == pytest.approx((c, a, m), rel=1e-4)
    noisy = (c + a * widths**m) * (1 + 0.002 * np.random.default_rng(0).standard_normal(len(widths)))
    fit = fit_power_law(widths, noisy)
    assert fit.m == pytest.approx(m, abs=0.05) and fit.c == pytest.approx(c, rel=0.1, abs=0.005)


def test_power_law_fit_keeps_a_and_c_non_negative():
    widths = np.array([1e3, 1e4, 1e5, 1e6])
    fit = fit_power_law(widths, [0.2, 0.21, 0.22, 0.23])  # increasing: no decaying power law fits
    assert fit.a >= 0 and fit.c >= 0 and fit.m < 0


def _dictionary(m=64, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(m, d, generator=g)
    return D / D.norm(dim=1, keepdim=True), g


def test_gradient_pursuit_never_increases_the_residual_and_respects_the_l0():
    D, g = _dictionary()
    x = torch.randn(100, 16, generator=g)
    b = 0.1 * torch.randn(16, generator=g)
    residuals = []
    for l0 in range(0, 9):
        x_hat, idx, z = gradient_pursuit(x, D, torch.full((100,), l0), b)
        residuals.append((x - x_hat).pow(2).sum(1))
        assert ((idx >= 0).sum(1) <= l0).all() and (z >= 0).all()
        recon = b + torch.einsum("ns,nsd->nd", z * (idx >= 0), D[idx.clamp(min=0)])
        torch.testing.assert_close(recon, x_hat, rtol=0, atol=1e-5)
    stacked = torch.stack(residuals)  # [budget, token]: a larger budget only extends the same path
    assert (stacked[1:] <= stacked[:-1] + 1e-5).all()
    assert (stacked[-1] < stacked[0]).float().mean() > 0.95


def test_gradient_pursuit_uses_each_tokens_own_l0_and_finds_exact_sparse_codes():
    D = torch.eye(16)[:, :]  # orthonormal atoms: pursuit recovers any non-negative sparse code exactly
    z = torch.zeros(30, 16)
    l0 = torch.randint(1, 5, (30,), generator=torch.Generator().manual_seed(1))
    for i in range(30):
        z[i, torch.randperm(16)[: int(l0[i])]] = torch.rand(int(l0[i])) + 0.5
    x_hat, idx, _ = gradient_pursuit(z @ D, D, l0)
    torch.testing.assert_close(x_hat, z @ D, rtol=0, atol=1e-5)
    assert ((idx >= 0).sum(1) == l0).all()


def test_synthetic_validation_recovers_injected_noise_levels():
    rows = validate(n=8000)
    for row in rows:
        assert row["recovered_nonlinear_fvu"] == pytest.approx(
            row["injected_nonlinear_fvu"], rel=0.05, abs=1e-4
        )
        assert row["recovered_linear_fvu"] == pytest.approx(row["injected_linear_fvu"], rel=0.02)
    assert rows[-1]["injected_nonlinear_fvu"] > 10 * rows[1]["injected_nonlinear_fvu"] > 0
    assert rows[-1]["injected_linear_fvu"] > 2 * rows[0]["injected_linear_fvu"] > 0  # both parts vary


def test_synthetic_data_rejects_features_that_are_not_linearly_readable():
    with pytest.raises(ValueError, match="n_features"):
        make_synthetic(d=8, n_features=9)


def test_sae_info_round_trips_through_safetensors_with_sparse_latents(tmp_path, random_info):
    dense = random_info.dense_latents()
    assert (random_info.l0 == (dense != 0).sum(1)).all()
    path = random_info.save(tmp_path / "info.safetensors")
    loaded = SAEInfo.load(path)
    for name in ("x", "x_hat", "indptr", "indices", "values", "token_ids"):
        assert torch.equal(getattr(loaded, name), getattr(random_info, name))
    assert loaded.meta == random_info.meta
    assert len(loaded.indices) == int((dense != 0).sum())  # only the active latents are stored
    rows = torch.tensor([5, 17, 2000])
    sub = loaded.subset(rows)
    assert torch.equal(sub.dense_latents(), dense[rows]) and torch.equal(sub.x, random_info.x[rows])
    freq = (dense != 0).double().mean(0)
    torch.testing.assert_close(loaded.latent_frequency, freq)


def test_report_states_each_quantitys_range_over_every_sweep():
    """README's Dark Matter line covers the k sweep too (it used to quote the width sweep only)."""
    from lorasae.darkmatter.report import ranges_line, sweep_ranges

    def row(v, n, f, c):
        return {"vector_r2": v, "norm_r2": n, "nonlinear_fvu": f,
                "ce": {"sae+linear % gap closed": c, "sae+nonlinear % gap closed": 100 - c}}  # fmt: skip

    summary = {"width_sweep": [row(0.47, 0.72, 0.14, 60), row(0.51, 0.80, 0.17, 70)],
               "k_sweep": [row(0.38, 0.77, 0.16, 50), row(0.58, 0.78, float("nan"), 80)]}  # fmt: skip
    ranges = sweep_ranges(summary)
    assert ranges["vector R²"] == {"all": (0.38, 0.58), "width sweep": (0.47, 0.51), "k sweep": (0.38, 0.58)}
    assert ranges["nonlinear FVU"]["all"] == (0.14, 0.17)  # NaN left out
    assert ranges["by x̂+nonlin"]["all"] == (20, 50)
    line = ranges_line(summary)
    assert line.startswith("Over every sweep: vector R² 0.38–0.58 (width sweep 0.47–0.51, k sweep 0.38–0.58)")
    assert "% CE gap closed by x̂+lin 50–80 % (width sweep 60–70 %, k sweep 50–80 %)" in line
