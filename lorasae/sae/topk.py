"""The TopK sparse autoencoder (SPEC §3.1).

``pre = ReLU(W_enc (x - b_dec) + b_enc)``; keep the top k latents per token;
``x_hat = sum_i a_i W_dec[i] + b_dec``. The fast path (default) uses the sparse kernels of
:mod:`lorasae.sae.kernels`; ``fast=False`` is the dense reference with plain autograd. ``save_sae`` /
``load_topk_sae`` (``TopKSAE.save`` / ``TopKSAE.load``) move one in and out of the SAELens files of
:mod:`lorasae.sae.io`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorasae.sae.attributes import DictionaryAttributes
from lorasae.sae.config import SaeConfig, dtype_name, to_torch_dtype
from lorasae.sae.fused_sae import fused_topk_sae
from lorasae.sae.io import (
    CFG_FILENAME,
    REDO_HINT,
    WEIGHT_NAMES,
    WEIGHTS_FILENAME,
    SaeFormatError,
    config_from_sae_lens,
    is_plain_topk,
    read_cfg,
    read_weights,
    sae_lens_cfg,
    write_sae_folder,
)
from lorasae.sae.kernels import sparse_decode, topk_encode


class SaeOutput(NamedTuple):
    x_hat: Tensor
    """Reconstruction, same shape as the input."""
    top_acts: Tensor
    """Activations of the k selected latents, [..., k]."""
    top_idx: Tensor
    """Indices of the k selected latents, [..., k]."""
    fvu: Tensor
    """Fraction of variance unexplained: ||x_hat - x||^2 / sum ||x - mean(x)||^2 over the batch's tokens."""
    auxk_loss: Tensor
    """AuxK dead-latent loss (0 unless a dead_mask with dead latents was given)."""


class TopKSAE(DictionaryAttributes, nn.Module):
    """TopK SAE. Parameters: ``encoder`` (nn.Linear d_in -> d_sae), ``W_dec`` [d_sae, d_in], ``b_dec`` [d_in].

    ``W_enc`` / ``b_enc`` are views in SAELens's layout (W_enc [d_in, d_sae]).
    """

    def __init__(
        self,
        cfg: SaeConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        fast: bool = True,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.fast = fast
        dt = to_torch_dtype(dtype if dtype is not None else cfg.dtype)
        self.encoder = nn.Linear(cfg.d_in, cfg.d_sae, device=device, dtype=dt)
        self.encoder.bias.data.zero_()
        self.W_dec = nn.Parameter(self.encoder.weight.detach().clone())
        self.set_decoder_norm_to_unit_norm()
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=dt))

    # ---- views and metadata -------------------------------------------------------------------
    @property
    def W_enc(self) -> Tensor:
        """Encoder weight in SAELens layout, [d_in, d_sae] (a view of ``encoder.weight``)."""
        return self.encoder.weight.t()

    @property
    def b_enc(self) -> Tensor:
        return self.encoder.bias

    @property
    def fixed_l0(self) -> int | None:
        """The active latents per token its inference encoding fixes: k (None: no fixed count, it is
        measured; `BatchTopKSAE` fires above a threshold at inference)."""
        return self.cfg.k

    # ---- encode / decode ----------------------------------------------------------------------
    def _encode(self, x: Tensor, want_pre: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """(acts, idx, ReLU'd dense pre-activations if ``want_pre``)."""
        sae_in = x.to(self.dtype) - self.b_dec
        if self.fast:
            acts, idx, z = topk_encode(sae_in, self.encoder.weight, self.encoder.bias, self.cfg.k)
        else:
            z = self.encoder(sae_in)
            vals, idx = z.topk(self.cfg.k, dim=-1, sorted=False)
            acts = vals.relu()  # == top k of ReLU(z) (ReLU is monotone)
        return acts, idx, F.relu(z) if want_pre else None

    def encode_topk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(top_acts [..., k], top_idx [..., k]) for activations x [..., d_in]."""
        acts, idx, _ = self._encode(x)
        return acts, idx

    def encode(self, x: Tensor) -> Tensor:
        """Dense latents [..., d_sae] (zero outside the top k)."""
        acts, idx = self.encode_topk(x)
        return torch.zeros(*acts.shape[:-1], self.cfg.d_sae, dtype=acts.dtype, device=acts.device).scatter(
            -1, idx, acts
        )

    def _decode_no_bias(self, acts: Tensor, idx: Tensor) -> Tensor:
        if self.fast:
            return sparse_decode(acts, idx, self.W_dec)
        dense = torch.zeros(*acts.shape[:-1], self.cfg.d_sae, dtype=acts.dtype, device=acts.device)
        return dense.scatter(-1, idx, acts) @ self.W_dec

    def decode_topk(self, top_acts: Tensor, top_idx: Tensor) -> Tensor:
        """Reconstruction from the k active latents: sum_s acts[s] W_dec[idx[s]] + b_dec."""
        return self._decode_no_bias(top_acts.to(self.dtype), top_idx) + self.b_dec

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction from dense latents z [..., d_sae]."""
        return z.to(self.dtype) @ self.W_dec + self.b_dec

    def reconstruct(self, x: Tensor) -> Tensor:
        """decode(encode(x)), computed sparsely."""
        return self.decode_topk(*self.encode_topk(x))

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> SaeOutput:
        """Reconstruct x [..., d_in] and compute FVU (and AuxK if ``dead_mask`` [d_sae] bool is given)."""
        x = x.to(self.dtype)
        want_aux = dead_mask is not None and bool(dead_mask.any())
        if self.fast and not want_aux:  # one fused function, latent-grouped backward (fused_sae.py)
            x_hat, acts, idx = fused_topk_sae(
                x, self.b_dec, self.encoder.weight, self.encoder.bias, self.W_dec, self.cfg.k
            )
            pre = None
        else:
            acts, idx, pre = self._encode(x, want_pre=want_aux)
            x_hat = self.decode_topk(acts, idx)
        flat_x = x.reshape(-1, self.cfg.d_in)
        resid = flat_x - x_hat.reshape(-1, self.cfg.d_in)
        total_var = (flat_x - flat_x.mean(0)).pow(2).sum()
        fvu = resid.pow(2).sum() / total_var
        if want_aux:
            assert pre is not None and dead_mask is not None
            auxk = self._auxk_loss(pre.reshape(-1, self.cfg.d_sae), resid, dead_mask, total_var)
        else:
            auxk = x_hat.new_zeros(())
        return SaeOutput(x_hat, acts, idx, fvu, auxk)

    def _auxk_loss(self, pre: Tensor, resid: Tensor, dead_mask: Tensor, total_var: Tensor) -> Tensor:
        """Gao et al.: the top k_aux dead latents (k_aux = d_in // 2) reconstruct the residual error."""
        num_dead = int(dead_mask.sum())
        k_aux = max(self.cfg.d_in // 2, 1)
        scale = min(num_dead / k_aux, 1.0)  # fewer dead latents -> smaller loss
        masked = pre.masked_fill(~dead_mask.to(torch.bool), float("-inf"))
        aux_acts, aux_idx = masked.topk(min(k_aux, num_dead), dim=-1, sorted=False)
        e_hat = self._decode_no_bias(aux_acts, aux_idx)
        return scale * (e_hat - resid.detach()).pow(2).sum() / total_var

    # ---- training helpers ---------------------------------------------------------------------
    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        eps = torch.finfo(self.W_dec.dtype).eps
        self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True) + eps

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Project out of W_dec.grad its component along each (unit-norm) decoder row."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec.data).sum(dim=1, keepdim=True)
        self.W_dec.grad -= parallel * self.W_dec.data

    # ---- persistence (SAELens on-disk format) -------------------------------------------------
    def save(self, folder: str | Path, **extra: Any) -> Path:
        """Write ``cfg.json`` + ``sae_weights.safetensors`` atomically; ``extra`` goes into cfg metadata."""
        return save_sae(self, folder, extra=extra or None)

    @classmethod
    def load(
        cls, folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | str | None = None
    ) -> TopKSAE:
        return load_topk_sae(folder, device=device, dtype=dtype)


# ---- SAELens on-disk format (the files and the config dict are io.py's) ------------------------------
def save_sae(sae: TopKSAE, folder: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``sae`` to ``folder`` in SAELens format (replacing it atomically); returns the folder."""
    weights = {
        "W_enc": sae.encoder.weight.detach().t(),
        "b_enc": sae.encoder.bias.detach(),
        "W_dec": sae.W_dec.detach(),
        "b_dec": sae.b_dec.detach(),
    }
    return write_sae_folder(folder, sae_lens_cfg(sae.cfg, sae.dtype, extra), weights)


def topk_from_state(
    cfg: SaeConfig, weights: Mapping[str, torch.Tensor], where: str, dtype: torch.dtype | None = None
) -> TopKSAE:
    """A TopKSAE with ``cfg`` (SaeConfig) holding ``weights`` in SAELens layout (checked shapes)."""
    missing = [name for name in WEIGHT_NAMES if name not in weights]
    if missing:
        raise SaeFormatError(f"{where} lacks tensors {missing} (has {sorted(weights)}). {REDO_HINT}")
    d, m = cfg.d_in, cfg.d_sae
    expected = {"W_enc": (d, m), "b_enc": (m,), "W_dec": (m, d), "b_dec": (d,)}
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise SaeFormatError(
                f"{where}: {name} has shape {tuple(weights[name].shape)}, but the config (d_in={d}, "
                f"d_sae={m}) needs {shape}. {REDO_HINT}"
            )
    dt = dtype or weights["W_dec"].dtype
    sae = TopKSAE(cfg, device="meta", dtype=dt)
    state = {
        "encoder.weight": weights["W_enc"].t(),
        "encoder.bias": weights["b_enc"],
        "W_dec": weights["W_dec"],
        "b_dec": weights["b_dec"],
    }
    sae.load_state_dict({name: w.to(dt).contiguous() for name, w in state.items()}, assign=True)
    sae.cfg.dtype = dtype_name(dt)
    return sae


def load_topk_sae(
    folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | str | None = None
) -> TopKSAE:
    """Load a TopK SAE saved in SAELens format (ours, or any plain sae_lens ``topk`` SAE)."""
    folder = Path(folder)
    cfg = read_cfg(folder)
    if not is_plain_topk(cfg):
        raise SaeFormatError(
            f"{folder / CFG_FILENAME} describes a {cfg.get('architecture', 'standard')!r} SAE with options "
            "TopKSAE does not model; load it with lorasae.sae.load_sae instead."
        )
    try:
        sae_cfg = config_from_sae_lens(cfg)
    except (KeyError, TypeError, ValueError) as err:
        raise SaeFormatError(
            f"{folder / CFG_FILENAME} lacks or has a bad field ({err!r}). {REDO_HINT}"
        ) from err
    weights = read_weights(folder)
    dt = to_torch_dtype(dtype) if dtype is not None else None
    sae = topk_from_state(sae_cfg, weights, str(folder / WEIGHTS_FILENAME), dt)
    return sae.to(device)
