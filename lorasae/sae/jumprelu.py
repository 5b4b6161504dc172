"""The JumpReLU SAE (Rajamanoharan et al., arXiv 2407.14435), `--architecture jumprelu`.

    pre = (x − b_dec·[apply_b_dec_to_input]) W_enc + b_enc,   θ = exp(log_threshold)  (per latent)
    z   = JumpReLU_θ(pre) = pre · H(pre − θ),                  x̂ = z W_dec + b_dec

The paper's encoder reads x itself (``apply_b_dec_to_input=False``, the default; SAELens's training
default subtracts b_dec, which the option gives). The step H has no gradient, so θ learns through the
paper's straight-through estimators with kernel K (the rectangle ``1{|u| < 1/2}``) and bandwidth ε:

    ∂/∂θ JumpReLU_θ(z) = −(θ/ε) K((z − θ)/ε),   ∂/∂z JumpReLU_θ(z) = H(z − θ)
    ∂/∂θ H(z − θ)      = −(1/ε) K((z − θ)/ε),   ∂/∂z H(z − θ)      = 0

(:class:`JumpReLUFunction`, :class:`StepFunction`; gradients reach log θ through exp by the chain rule.)
The sparsity penalty (``CoderOutput.l1``; multiply by :func:`l0_coefficient`):

- ``"step"`` (the paper's, SAELens's default): the L0, mean over tokens of Σ_i H(pre_i − θ_i); the
  decoder rows stay unit norm (the paper's constraint, since the L0 ignores their norms);
- ``"tanh"`` (Anthropic's, SAELens's ``tanh``): mean over tokens of Σ_i tanh(c · z_i ‖W_dec_i‖) with
  c = ``tanh_scale``; the decoder norms are free (the penalty is weighted by them).

On disk: SAELens's ``jumprelu`` format (``threshold`` = θ), which ``sae_lens`` loads as a ``JumpReLUSAE``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lorasae.sae.attributes import DictionaryAttributes
from lorasae.sae.coder import CoderOutput, coder_cfg_dict, dense_indices, ours_of, provenance
from lorasae.sae.config import dtype_name, to_torch_dtype
from lorasae.sae.io import (
    CFG_FILENAME,
    WEIGHTS_FILENAME,
    SaeFormatError,
    read_cfg,
    read_weights,
    write_sae_folder,
)
from lorasae.sae.kernels import sparse_decode
from lorasae.sae.select import topk_select

SAE_LENS_ARCHITECTURE = "jumprelu"
SPARSITY_LOSSES = ("step", "tanh")
DECODER_INIT_NORM = 0.1
SPARSE_BELOW = 16
"""The training forward decodes sparsely when no token has more than d_sae / 16 latents above θ − ε/2
(firing, or close enough below θ for the straight-through estimator)."""
"""Initial decoder row norm in ``tanh`` mode (as SAELens); ``step`` mode starts (and stays) at 1."""


def rectangle(u: Tensor) -> Tensor:
    """The kernel K(u) = 1 if |u| < 1/2 else 0."""
    return (u.abs() < 0.5).to(u.dtype)


class JumpReLUFunction(torch.autograd.Function):
    """z · H(z − θ) with the paper's pseudo-derivative for θ (θ broadcasts over z's leading dims)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = grad * (z > theta).to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_theta = None
        if ctx.needs_input_grad[1]:
            grad_theta = _sum_to(-(theta / eps) * rectangle((z - theta) / eps) * grad, theta)
        return grad_z, grad_theta, None


class StepFunction(torch.autograd.Function):
    """H(z − θ) with the paper's pseudo-derivative for θ (none for z)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = None
        if ctx.needs_input_grad[1]:
            grad_theta = _sum_to(-(1.0 / eps) * rectangle((z - theta) / eps) * grad, theta)
        return None, grad_theta, None  # no gradient to z


def _sum_to(per: Tensor, theta: Tensor) -> Tensor:
    """The per-element θ-gradient summed over the dimensions θ was broadcast along (θ [m] or z's shape)."""
    if per.shape == theta.shape:
        return per
    return per.reshape(-1, per.shape[-1]).sum(0).reshape(theta.shape)


def l0_coefficient(step: int, final: float, warmup_steps: int) -> float:
    """λ at 0-based ``step``: rises linearly from 0 at step 0 to ``final`` at ``warmup_steps``, then
    stays (SAELens's ``CoefficientScheduler``, whose value at step s is final · min(s, W) / W)."""
    if warmup_steps <= 0:
        return float(final)
    return float(final) * min(step, warmup_steps) / warmup_steps


@dataclass
class JumpReLUConfig:
    """Shape, provenance and the JumpReLU training options."""

    d_in: int
    d_sae: int
    model_name: str | None = None
    hook_layer: int | None = None
    hook_name: str | None = None
    dtype: str = "float32"
    skip_special_tokens: bool = False
    bandwidth: float = 0.001
    """ε of the straight-through estimator (the paper's 0.001; SAELens defaults to 0.05)."""
    init_threshold: float = 0.001
    """θ at initialisation (the paper's 0.001; SAELens defaults to 0.01)."""
    sparsity_loss: str = "step"
    """``step`` (L0, the paper's) or ``tanh`` (Anthropic's)."""
    tanh_scale: float = 4.0
    """c of the tanh penalty."""
    apply_b_dec_to_input: bool = False
    """Subtract b_dec from x before encoding (False: the paper's encoder)."""

    def __post_init__(self) -> None:
        if min(self.d_in, self.d_sae) < 1:
            raise ValueError(f"JumpReLUConfig needs positive d_in, d_sae (got {self.d_in}, {self.d_sae})")
        if self.sparsity_loss not in SPARSITY_LOSSES:
            raise ValueError(
                f"JumpReLUConfig: sparsity_loss must be one of {SPARSITY_LOSSES}, got {self.sparsity_loss!r}"
            )
        if self.bandwidth <= 0 or self.init_threshold <= 0:
            raise ValueError("JumpReLUConfig: bandwidth and init_threshold must be positive")
        if self.hook_name is None and self.hook_layer is not None:
            self.hook_name = f"blocks.{self.hook_layer}.hook_resid_post"
        self.dtype = dtype_name(to_torch_dtype(self.dtype))

    @property
    def options(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k in _OPTIONS}


_OPTIONS = ("bandwidth", "init_threshold", "sparsity_loss", "tanh_scale")


class JumpReLUSAE(DictionaryAttributes, nn.Module):
    """Parameters in SAELens's layout (``W_enc`` [d_in, d_sae], ``b_enc``, ``W_dec`` [d_sae, d_in],
    ``b_dec``) + ``log_threshold`` [d_sae]."""

    def __init__(
        self, cfg: JumpReLUConfig, device: torch.device | str | None = None, fast: bool = True
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.fast = fast  # decode sparsely when few latents fire (False: always the dense decoder)
        dt = to_torch_dtype(cfg.dtype)
        w = torch.randn(cfg.d_sae, cfg.d_in, device=device, dtype=dt)
        norm = 1.0 if cfg.sparsity_loss == "step" else DECODER_INIT_NORM
        w = norm * w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, device=device, dtype=dt))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=dt))
        self.log_threshold = nn.Parameter(
            torch.full((cfg.d_sae,), math.log(cfg.init_threshold), device=device, dtype=dt)
        )

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def pre_activations(self, x: Tensor) -> Tensor:
        sae_in = x.to(self.dtype)
        if self.cfg.apply_b_dec_to_input:
            sae_in = sae_in - self.b_dec
        return sae_in @ self.W_enc + self.b_enc

    def encode(self, x: Tensor) -> Tensor:
        """Latents z [..., d_sae] (the θ-gradient flows in training)."""
        return JumpReLUFunction.apply(self.pre_activations(x), self.threshold, self.cfg.bandwidth)

    def decode(self, z: Tensor) -> Tensor:
        return z.to(self.dtype) @ self.W_dec + self.b_dec

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def encode_topk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encode(x)
        return z, dense_indices(z)

    def decode_topk(self, acts: Tensor, idx: Tensor) -> Tensor:
        return self.decode(acts)

    def sparsity_loss(self, pre: Tensor, z: Tensor) -> Tensor:
        """The penalty of ``cfg.sparsity_loss`` (mean over tokens), before its coefficient."""
        return self._penalty(pre, z, self.threshold, self.W_dec.norm(dim=1))

    def _penalty(self, pre: Tensor, z: Tensor, theta: Tensor, dec_norm: Tensor) -> Tensor:
        if self.cfg.sparsity_loss == "step":
            return StepFunction.apply(pre, theta, self.cfg.bandwidth).sum(-1).mean()
        return torch.tanh(self.cfg.tanh_scale * z * dec_norm).sum(-1).mean()

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> CoderOutput:
        """FVU and the sparsity penalty of x [N, d_in] (``dead_mask`` is accepted and unused)."""
        x = x.to(self.dtype).reshape(-1, self.cfg.d_in)
        pre = self.pre_activations(x)
        theta = self.threshold
        # the latents the backward needs: those firing and those in the kernel's window below θ
        with torch.no_grad():
            margin = pre.detach() - (theta.detach() - self.cfg.bandwidth / 2)
            width = max(int((margin > 0).sum(-1).max()), 1) if x.shape[0] else self.cfg.d_sae
        if self.fast and width * SPARSE_BELOW <= self.cfg.d_sae:
            # few of them (a trained SAE): the estimators, the penalty and the decoder (the TopK kernel)
            # run on those [N, w] slots only; every other latent has z = 0 and no gradient
            idx = topk_select(margin, width)[1]
            pre_s, theta_s = pre.gather(-1, idx), theta[idx]
            acts = JumpReLUFunction.apply(pre_s, theta_s, self.cfg.bandwidth)
            penalty = self._penalty(pre_s, acts, theta_s, self.W_dec.norm(dim=1)[idx])
            x_hat = sparse_decode(acts, idx, self.W_dec) + self.b_dec
        else:
            acts = JumpReLUFunction.apply(pre, theta, self.cfg.bandwidth)
            idx = dense_indices(acts)
            penalty = self._penalty(pre, acts, theta, self.W_dec.norm(dim=1))
            x_hat = self.decode(acts)
        fvu = (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
        return CoderOutput(x_hat, acts, idx, fvu, x_hat.new_zeros(()), penalty, fvu)

    # ---- the per-step constraints (step mode: unit-norm decoder rows, as the paper) -------------
    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        if self.cfg.sparsity_loss == "step":
            self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True) + torch.finfo(self.W_dec.dtype).eps

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        if self.cfg.sparsity_loss == "step" and self.W_dec.grad is not None:
            self.W_dec.grad -= (self.W_dec.grad * self.W_dec.data).sum(1, keepdim=True) * self.W_dec.data

    def after_step(self, out: CoderOutput) -> None:
        """Nothing: θ is a parameter the optimizer moves."""

    # ---- persistence (SAELens "jumprelu") -------------------------------------------------------
    def save(self, folder: str | Path, **extra: Any) -> Path:
        cfg = coder_cfg_dict(
            self.cfg, self.dtype, SAE_LENS_ARCHITECTURE, "jumprelu",
            fields={"apply_b_dec_to_input": self.cfg.apply_b_dec_to_input},
            extra={**self.cfg.options, **extra},
        )  # fmt: skip
        weights = {name: getattr(self, name).detach() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
        weights["threshold"] = self.threshold.detach()
        return write_sae_folder(folder, cfg, weights)

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu") -> JumpReLUSAE:
        """Ours, or any plain SAELens ``jumprelu`` folder (no activation normalisation or reshaping)."""
        folder = Path(folder)
        raw = read_cfg(folder)
        where = folder / CFG_FILENAME
        if raw.get("architecture") != SAE_LENS_ARCHITECTURE or not is_plain(raw):
            raise SaeFormatError(f"{where} is not a plain jumprelu SAE; load it with lorasae.sae.load_sae.")
        ours = ours_of(raw)
        cfg = JumpReLUConfig(
            d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]), **provenance(raw),
            apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
            **{k: ours[k] for k in _OPTIONS if k in ours},
        )  # fmt: skip
        weights = read_weights(folder)
        try:
            theta = weights.pop("threshold")
            if bool((theta < 0).any()):
                raise ValueError("negative thresholds (log θ is undefined)")
            state = {n: weights[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
            state["log_threshold"] = theta.log()
            sae = cls(cfg, device="meta")
            sae.load_state_dict(state, assign=True)
        except (KeyError, RuntimeError, ValueError) as err:
            raise SaeFormatError(f"{folder / WEIGHTS_FILENAME} does not match its cfg.json: {err!r}") from err
        return sae.to(device)


def is_plain(raw: dict[str, Any]) -> bool:
    """No activation normalisation, reshaping or decoder-norm rescaling: the model this module computes."""
    return (
        raw.get("normalize_activations") in (None, "none", False)
        and raw.get("reshape_activations", "none") == "none"
        and not raw.get("rescale_acts_by_decoder_norm", False)
    )


__all__ = [
    "JumpReLUConfig",
    "JumpReLUFunction",
    "JumpReLUSAE",
    "StepFunction",
    "l0_coefficient",
    "rectangle",
]
