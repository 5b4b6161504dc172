"""The BatchTopK SAE (Bussmann, Nabeshima, Nanda, arXiv 2412.06410), `--architecture batchtopk`.

Same parameters and encoder as the TopK SAE (``pre = (x − b_dec) W_enc + b_enc``), but in training the
k·N largest ReLU'd pre-activations of the whole batch of N tokens are kept (tokens differ in how many
latents they use; the average is k). At inference a token cannot see its batch, so latents fire when
``pre > θ``: one threshold θ for every latent, estimated during training as SAELens does (its
``BatchTopKTrainingSAE.update_topk_threshold``): after each training step,
``θ ← (1 − lr) θ + lr · (smallest positive kept activation of the batch)``, θ₀ = 0, lr =
``threshold_lr`` (0.01), in float64. The paper averages that minimum over batches; the EMA weights
recent batches more.

Training vs inference follows ``self.training`` (``encode`` / ``reconstruct`` / ``forward``), as with
SAELens's training and inference classes; ``load_sae`` returns it in eval mode.

Kernels: the training step is the TopK SAE's fused function (:mod:`lorasae.sae.fused_sae`: one dense
encoder GEMM, sparse decode and latent-grouped backward) with the per-token top k replaced by the batch
selection :func:`batch_topk_slots` (candidates from each token's top 4k, exact); with AuxK (dead
latents) the unfused path (dense pre-activations, ``sparse_decode``). ``fast=False`` is that unfused
path always. The decoder-norm constraint and AuxK are the TopK SAE's.

On disk (SAELens's inference format for a trained BatchTopK): ``architecture: "jumprelu"`` with
``threshold`` = θ for every latent and ``metadata.training_architecture: "batchtopk"`` (+ its details,
k and the threshold lr), so ``sae_lens.SAE.load_from_disk`` gives a ``JumpReLUSAE`` with equal outputs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lorasae.sae.coder import CoderOutput, coder_cfg_dict, ours_of, provenance, training_details
from lorasae.sae.config import SaeConfig, dtype_name, to_torch_dtype
from lorasae.sae.fused_sae import fused_topk_sae
from lorasae.sae.io import CFG_FILENAME, SaeFormatError, read_cfg, read_weights, write_sae_folder
from lorasae.sae.kernels import sparse_decode
from lorasae.sae.select import topk_select
from lorasae.sae.topk import TopKSAE, topk_from_state

SAE_LENS_ARCHITECTURE = "jumprelu"
TRAINING_ARCHITECTURE = "batchtopk"


@dataclass
class BatchTopKConfig(SaeConfig):
    """A TopK SAE's fields (k = the average active latents per token) + the threshold's EMA rate."""

    threshold_lr: float = 0.01
    """Rate of the inference threshold's moving average (SAELens's ``topk_threshold_lr``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.threshold_lr <= 1.0:
            raise ValueError(f"BatchTopKConfig: threshold_lr must be in (0, 1], got {self.threshold_lr}")


def batch_topk_slots(z: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Which entries of z [N, m] are among the k·N largest of the whole batch, per token as
    (idx [N, w], kept [N, w] bool), w the most any token keeps (slots past a token's count: kept False).

    Exact without ranking all N·m entries: each token's top c candidates (c = 4k, doubled while some
    token keeps all its candidates) hold every kept entry, since a token that does not keep all its
    candidates keeps none of the smaller entries outside them."""
    n, m = z.shape
    total = min(k * n, n * m)
    width = min(m, 4 * k)
    with torch.no_grad():
        while True:
            vals, idx = topk_select(z.detach().contiguous(), width)
            kept = torch.zeros(n * width, dtype=torch.bool, device=z.device)
            kept[vals.reshape(-1).topk(total, sorted=False).indices] = True
            kept = kept.view(n, width)
            if width == m or not bool(kept.all(1).any()):
                break
            width = min(m, 2 * width)
        w = max(int(kept.sum(1).max()), 1)
        order = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)[:, :w]
        return idx.gather(1, order), kept.gather(1, order)


def batch_topk_select(pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Of ReLU(pre) [N, m], the k·N largest entries over the whole batch, per token as
    (acts [N, w], idx [N, w]) (:func:`batch_topk_slots`; empty slots hold activation 0).
    Differentiable in ``pre`` (through the kept entries)."""
    idx, kept = batch_topk_slots(pre, k)
    return pre.gather(1, idx).relu() * kept, idx


def batch_topk_values(z: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(values, idx) [N, w] of :func:`batch_topk_slots`, 0 in the empty slots: the fused kernel's
    ``select`` (it applies the ReLU, and its backward gates the zero slots)."""
    idx, kept = batch_topk_slots(z, k)
    return z.gather(1, idx).masked_fill_(~kept, 0.0), idx


class BatchTopKSAE(TopKSAE):
    """BatchTopK SAE: a `TopKSAE` whose training selection is over the batch; buffer ``threshold``
    (float64 scalar) is the inference threshold."""

    cfg: BatchTopKConfig
    threshold: Tensor

    def __init__(
        self,
        cfg: BatchTopKConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        fast: bool = True,
    ) -> None:
        super().__init__(cfg, device=device, dtype=dtype, fast=fast)
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64, device=device))

    @property
    def fixed_l0(self) -> None:
        """None: at inference latents fire above the threshold, k is only the training average."""
        return None

    # ---- encode / decode ----------------------------------------------------------------------
    def _pre(self, x: Tensor) -> Tensor:
        return self.encoder(x.to(self.dtype).reshape(-1, self.cfg.d_in) - self.b_dec)

    def _select(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """(acts, idx) [N, k']: the batch top k·N in training, else the latents above the threshold."""
        if self.training:
            return batch_topk_select(pre, self.cfg.k)
        return threshold_select(pre, self.threshold.to(pre.dtype))

    def encode_topk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        acts, idx = self._select(self._pre(x))
        lead = x.shape[:-1]
        return acts.view(*lead, -1), idx.view(*lead, -1)

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode_topk(*self.encode_topk(x))

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> CoderOutput:
        """Training forward on x [N, d_in]: batch top k (or the threshold in eval mode), FVU, AuxK."""
        x = x.to(self.dtype).reshape(-1, self.cfg.d_in)
        want_aux = dead_mask is not None and bool(dead_mask.any())
        if self.training and self.fast and not want_aux:  # the TopK SAE's fused kernel, batch selection
            k = self.cfg.k
            select = functools.partial(batch_topk_values, k=k)
            w = self.encoder.weight
            x_hat, acts, idx = fused_topk_sae(x, self.b_dec, w, self.encoder.bias, self.W_dec, k, select)
            pre = None
        else:
            pre = self._pre(x)
            acts, idx = self._select(pre)
            x_hat = sparse_decode(acts, idx, self.W_dec) + self.b_dec
        resid = x - x_hat
        total_var = (x - x.mean(0)).pow(2).sum()
        fvu = resid.pow(2).sum() / total_var
        if want_aux:
            assert pre is not None and dead_mask is not None
            auxk = self._auxk_loss(pre.relu(), resid, dead_mask, total_var)
        else:
            auxk = x_hat.new_zeros(())
        return CoderOutput(x_hat, acts, idx, fvu, auxk, x_hat.new_zeros(()), fvu)

    # ---- the per-step state -------------------------------------------------------------------
    @torch.no_grad()
    def update_threshold(self, acts: Tensor) -> None:
        """θ ← (1 − lr) θ + lr · min(positive entries of ``acts``) (unchanged if none is positive)."""
        positive = acts[acts > 0]
        if positive.numel():
            lr = self.cfg.threshold_lr
            self.threshold.copy_((1 - lr) * self.threshold + lr * positive.min().to(torch.float64))

    def after_step(self, out: CoderOutput) -> None:
        """What the trainer calls after each optimizer step with that step's output."""
        self.update_threshold(out.top_acts)

    # ---- persistence ---------------------------------------------------------------------------
    def _training_details(self) -> dict[str, Any]:
        return {"k": self.cfg.k, "topk_threshold_lr": self.cfg.threshold_lr}

    def save(self, folder: str | Path, **extra: Any) -> Path:
        """SAELens inference format: a JumpReLU SAE with θ for every latent (see the module doc)."""
        arch = type(self).TRAINING
        cfg = coder_cfg_dict(
            self.cfg,
            self.dtype,
            SAE_LENS_ARCHITECTURE,
            type(self).OURS,
            metadata={
                "training_architecture": arch,
                "training_architecture_details": self._training_details(),
            },
            extra={"k": self.cfg.k, "threshold_lr": self.cfg.threshold_lr, **self._extra_ours(), **extra},
        )
        weights = {
            "W_enc": self.encoder.weight.detach().t(),
            "b_enc": self.encoder.bias.detach(),
            "W_dec": self.W_dec.detach(),
            "b_dec": self.b_dec.detach(),
            "threshold": torch.full_like(self.encoder.bias.detach(), float(self.threshold)),
        }
        return write_sae_folder(folder, cfg, weights)

    def _extra_ours(self) -> dict[str, Any]:
        return {}

    OURS = "batchtopk"
    TRAINING = TRAINING_ARCHITECTURE

    @classmethod
    def _config_from(cls, raw: dict[str, Any], k: int, threshold_lr: float) -> BatchTopKConfig:
        return BatchTopKConfig(
            d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]), k=k, threshold_lr=threshold_lr, **provenance(raw)
        )

    @classmethod
    def load(
        cls, folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | str | None = None
    ) -> BatchTopKSAE:
        """A folder written by ``save`` or by SAELens's ``save_inference_model`` of a trained BatchTopK
        (its threshold must be one value for every latent)."""
        folder = Path(folder)
        raw = read_cfg(folder)
        meta = raw.get("metadata") or {}
        where = folder / CFG_FILENAME
        if (
            raw.get("architecture") != SAE_LENS_ARCHITECTURE
            or meta.get("training_architecture") != cls.TRAINING
        ):
            raise SaeFormatError(
                f"{where} is not a {cls.TRAINING} SAE saved for inference; load it with load_sae."
            )
        details, ours = training_details(raw), ours_of(raw)
        k = round(float(ours.get("k", details.get("k", 0))))
        lr = float(ours.get("threshold_lr", details.get("topk_threshold_lr", 0.01)))
        weights = read_weights(folder)
        theta = weights.pop("threshold", None)
        if theta is None or theta.numel() and not bool((theta == theta.flatten()[0]).all()):
            raise SaeFormatError(
                f"{where}: a {cls.TRAINING} SAE needs one threshold for all latents; load it with load_sae."
            )
        try:
            sae_cfg = cls._config_from(raw, max(k, 1), lr)
        except (KeyError, TypeError, ValueError) as err:
            raise SaeFormatError(f"{where} lacks or has a bad field ({err!r}); re-save it.") from err
        dt = to_torch_dtype(dtype) if dtype is not None else weights["W_dec"].dtype
        plain = topk_from_state(sae_cfg, weights, str(folder), dt)
        sae = cls(sae_cfg, device="meta", dtype=dt)
        state = {**plain.state_dict(), "threshold": theta.flatten()[0].to(torch.float64)}
        sae.load_state_dict(state, assign=True)
        sae.cfg.dtype = dtype_name(dt)
        return sae.to(device)


def threshold_select(pre: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor]:
    """Per token, the latents with ``pre > threshold`` (and > 0) as zero-padded (acts, idx) [N, k']."""
    z = pre * ((pre > threshold) & (pre > 0))
    width = max(int((z > 0).sum(-1).max()) if z.numel() else 1, 1)
    _, idx = z.detach().topk(min(width, z.shape[-1]), dim=-1, sorted=False)
    return z.gather(-1, idx), idx


__all__ = [
    "BatchTopKConfig",
    "BatchTopKSAE",
    "batch_topk_select",
    "batch_topk_slots",
    "batch_topk_values",
    "threshold_select",
]
