"""Linear prediction of the SAE error from the activation (Engels et al. §4; SPEC §7).

A least-squares map W* (d×d, optionally with a bias) from x to e = x − x̂ is fitted on a random half of
an SAEInfo's tokens (seeded; the original permutes before it splits) and scored on the rest: R² per output dimension averaged over dimensions (the paper's
number, ≈ 0.5 for Gemma Scope), and the error's squared norm ‖e‖² predicted linearly from x (paper:
R² > 0.9) next to baselines that know less than x (token identity, ‖x‖, L0, the model's loss). The
error splits exactly into the linear error x·W* + b and the nonlinear error e − (x·W* + b); the
nonlinear FVU is FVU(x, x̂ + x·W* + b).

Fits accumulate XᵀX in float64 and solve with an SVD-based least-squares driver, so a rank-deficient
design (a constant dimension, fewer tokens than dimensions) still gives the minimum-norm solution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from lorasae.core.losses import fvu, total_variance
from lorasae.darkmatter.info import SAEInfo

_ROWS = 65536  # rows per Gram-matrix accumulation step


@dataclass
class LinearMap:
    """y ≈ x·W + b (b = 0 without a bias)."""

    W: Tensor
    """[d_in, d_out], float64."""
    b: Tensor
    """[d_out], float64."""

    def __call__(self, x: Tensor) -> Tensor:
        """Prediction in x's dtype and device."""
        return (x.double() @ self.W.to(x.device) + self.b.to(x.device)).to(x.dtype)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> LinearMap:
        return LinearMap(self.W.to(device, dtype), self.b.to(device, dtype))


def fit_linear(x: Tensor, y: Tensor, bias: bool = True) -> LinearMap:
    """Least squares min ‖[x, 1]·[W; b] − y‖² (without the column of ones when `bias` is False)."""
    if y.ndim == 1:
        fitted = fit_linear(x, y[:, None], bias)
        return LinearMap(fitted.W[:, 0], fitted.b[0])
    d_in = x.shape[1] + int(bias)
    gram = torch.zeros(d_in, d_in, dtype=torch.float64, device=x.device)
    rhs = torch.zeros(d_in, y.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, len(x), _ROWS):
        xs = x[start : start + _ROWS].double()
        if bias:
            xs = torch.cat([xs, torch.ones(len(xs), 1, dtype=torch.float64, device=x.device)], 1)
        gram += xs.T @ xs
        rhs += xs.T @ y[start : start + _ROWS].to(x.device).double()
    sol = torch.linalg.lstsq(gram.cpu(), rhs.cpu(), rcond=1e-12, driver="gelsd").solution
    W = sol[: x.shape[1]]
    b = sol[-1] if bias else torch.zeros(y.shape[1], dtype=torch.float64)
    return LinearMap(W, b)


def r2_per_dim(y: Tensor, y_pred: Tensor) -> Tensor:
    """R² of each column: 1 − Σ(y − ŷ)² / Σ(y − ȳ)² ([d]; a 1-D y gives a scalar)."""
    y, y_pred = y.double(), y_pred.double()
    ss_res = (y - y_pred).pow(2).sum(0)
    ss_tot = (y - y.mean(0)).pow(2).sum(0)
    return 1 - ss_res / ss_tot


def r2(y: Tensor, y_pred: Tensor) -> float:
    """R² averaged over output dimensions (the paper's vector R²; for a 1-D target, its R²)."""
    return float(r2_per_dim(y, y_pred).mean())


@dataclass
class ErrorSplit:
    linear: Tensor
    """x·W* + b: the linearly predictable part of the error."""
    nonlinear: Tensor
    """e − linear: the rest (so linear + nonlinear = e exactly)."""


def split_error(x: Tensor, error: Tensor, lin: LinearMap) -> ErrorSplit:
    linear = lin(x.float())
    return ErrorSplit(linear, error - linear)


SPLITS = ("random", "contiguous")
"""How the tokens split into fit and held-out rows: `random` (the original's `run_lstsq`, which permutes the
tokens before taking the first 150k to fit) or `contiguous` (the first rows fit, the rest score)."""


def train_test_rows(
    n: int, train_fraction: float, split: str = "random", seed: int = 0
) -> tuple[Tensor, Tensor]:
    """(fit rows, held-out rows): sorted token indices. `random` draws the `train_fraction` that fits
    uniformly at random (seeded), so both sides hold tokens of every chunk and position; `contiguous`
    takes the first rows (the tokens are stored chunk by chunk, so chunks stay whole but one)."""
    n_train = int(round(n * train_fraction))
    if not 0 < n_train < n:
        raise ValueError(f"train_fraction {train_fraction} leaves no train or no test tokens out of {n}")
    if split == "contiguous":
        return torch.arange(n_train), torch.arange(n_train, n)
    if split != "random":
        raise ValueError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:n_train].sort().values, order[n_train:].sort().values


def _fit_score(
    features_train: Tensor, target_train: Tensor, features_test: Tensor, target_test: Tensor
) -> float:
    lin = fit_linear(features_train, target_train, bias=True)
    return r2(target_test, lin(features_test.double()))


def token_identity_r2(
    tokens_train: Tensor, target_train: Tensor, tokens_test: Tensor, target_test: Tensor
) -> float:
    """R² of predicting the target by its token's mean on the train tokens (the train mean for tokens
    never seen there)."""
    size = int(max(tokens_train.max(), tokens_test.max())) + 1
    sums = torch.zeros(size, dtype=torch.float64).index_add_(0, tokens_train.long(), target_train.double())
    counts = torch.bincount(tokens_train.long(), minlength=size).double()
    means = torch.where(counts > 0, sums / counts.clamp(min=1), target_train.double().mean())
    return r2(target_test, means[tokens_test.long()])


@dataclass
class LinearReport:
    """Numbers of `analyze_linear` (all on the held-out tokens)."""

    n_train: int
    n_test: int
    split: str
    """How the rows split (`SPLITS`); the seed is the run's."""
    fvu: float
    """FVU(x, x̂) of the SAE."""
    vector_r2: float
    """R² of e from x·W* + b, averaged over dimensions."""
    vector_r2_no_bias: float
    norm_r2: float
    """R² of ‖e‖² from a linear function of x (with bias)."""
    norm_r2_no_bias: float
    linear_fvu: float
    """‖x·W* + b‖² / total variance of x: the linear error's share of the variance."""
    nonlinear_fvu: float
    """FVU(x, x̂ + x·W* + b): the nonlinear error's share."""
    baseline_norm_r2: dict[str, float]
    """R² of ‖e‖² from token identity, ‖x‖, L0, and the model's loss (each alone, linear with bias)."""

    def as_dict(self) -> dict:
        return asdict(self)


def analyze_linear(
    info: SAEInfo,
    train_fraction: float = 0.5,
    device: torch.device | str | None = None,
    split: str = "random",
    seed: int = 0,
) -> tuple[LinearReport, LinearMap]:
    """Fit W* (with bias) on `train_fraction` of the tokens (`train_test_rows(split, seed)`: at random by
    default, as the original); every number on the rest. Returns
    the report and the fitted map (with bias). `device` (e.g. a GPU) holds the activations for the
    float64 Gram matrices (d = 2304 on 150k tokens is ~1.6 TFLOP)."""
    tr, te = train_test_rows(len(info), train_fraction, split, seed)
    x, e = info.x.to(device), info.error.to(device)
    x_tr, x_te = x[tr.to(x.device)], x[te.to(x.device)]
    e_tr, e_te = e[tr.to(x.device)], e[te.to(x.device)]
    lin = fit_linear(x_tr, e_tr, bias=True)
    lin0 = fit_linear(x_tr, e_tr, bias=False)
    e_lin = lin(x_te)
    norm2 = e.pow(2).sum(1).cpu()
    var = total_variance(x_te)
    l0 = info.l0.double()
    x_hat_te = info.x_hat[te].to(x.device)
    baselines = {
        "token identity": token_identity_r2(info.token_ids[tr], norm2[tr], info.token_ids[te], norm2[te]),
        "||x||": _fit_score(info.x_norm[tr, None], norm2[tr], info.x_norm[te, None], norm2[te]),
        "L0": _fit_score(l0[tr, None], norm2[tr], l0[te, None], norm2[te]) if l0[tr].std() > 0 else 0.0,
    }
    loss = info.loss
    ok_tr, ok_te = torch.isfinite(loss[tr]), torch.isfinite(loss[te])
    if ok_tr.sum() > 1 and ok_te.sum() > 1:
        baselines["model loss"] = _fit_score(
            loss[tr][ok_tr, None], norm2[tr][ok_tr], loss[te][ok_te, None], norm2[te][ok_te]
        )
    norm_lin = fit_linear(x_tr, norm2[tr].to(x.device), bias=True)
    norm_lin0 = fit_linear(x_tr, norm2[tr].to(x.device), bias=False)
    norm_te = norm2[te].to(x.device)
    report = LinearReport(
        n_train=len(tr), n_test=len(te), split=split,
        fvu=float(fvu(x_te, x_hat_te)),
        vector_r2=r2(e_te, e_lin), vector_r2_no_bias=r2(e_te, lin0(x_te)),
        norm_r2=r2(norm_te, norm_lin(x_te.double())), norm_r2_no_bias=r2(norm_te, norm_lin0(x_te.double())),
        linear_fvu=float(e_lin.double().pow(2).sum() / var),
        nonlinear_fvu=float(fvu(x_te, x_hat_te + e_lin)),
        baseline_norm_r2=baselines,
    )  # fmt: skip
    return report, lin
