"""The TopK sparse autoencoder (SPEC §3.1).

``pre = ReLU(W_enc (x - b_dec) + b_enc)``; keep the top k latents per token;
``x_hat = sum_i a_i W_dec[i] + b_dec``. The fast path (default) uses the sparse kernels of
:mod:`lorasae.sae.kernels`; ``fast=False`` is the dense reference with plain autograd.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorasae.runtime import dtype_name
from lorasae.runtime import parse_dtype as to_torch_dtype
from lorasae.sae.fused_sae import fused_topk_sae
from lorasae.sae.kernels import sparse_decode, topk_encode


@dataclass
class SaeConfig:
    """Shape and provenance of a TopK SAE (what goes into SAELens's cfg.json)."""

    d_in: int
    """Width of the activations the SAE reads (the model's d_model)."""
    d_sae: int
    """Number of latents m (d_in x expansion factor)."""
    k: int
    """Active latents per token."""
    model_name: str | None = None
    """Model whose activations the SAE was trained on."""
    hook_layer: int | None = None
    """Decoder layer L whose output the SAE reads (None if unknown)."""
    hook_name: str | None = None
    """TransformerLens hook name; defaults to ``blocks.{hook_layer}.hook_resid_post``."""
    dtype: str = "float32"
    """Parameter dtype name."""
    skip_special_tokens: bool = False
    """When spliced, positions holding special tokens (BOS/EOS) keep the original activation."""

    def __post_init__(self) -> None:
        if min(self.d_in, self.d_sae, self.k) < 1:
            raise ValueError(
                f"SaeConfig needs positive d_in, d_sae, k (got {self.d_in}, {self.d_sae}, {self.k})"
            )
        if self.k > self.d_sae:
            raise ValueError(f"k={self.k} exceeds the number of latents d_sae={self.d_sae}")
        if self.hook_name is None and self.hook_layer is not None:
            self.hook_name = f"blocks.{self.hook_layer}.hook_resid_post"
        self.dtype = dtype_name(to_torch_dtype(self.dtype))

    @classmethod
    def from_expansion(cls, d_in: int, expansion_factor: int, k: int, **kwargs: Any) -> SaeConfig:
        return cls(d_in=d_in, d_sae=d_in * expansion_factor, k=k, **kwargs)

    @property
    def expansion_factor(self) -> float:
        return self.d_sae / self.d_in

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SaeConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{key: val for key, val in d.items() if key in names})


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


class TopKSAE(nn.Module):
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
    def dtype(self) -> torch.dtype:
        return self.W_dec.dtype

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    @property
    def hook_layer(self) -> int | None:
        return self.cfg.hook_layer

    @property
    def skip_special_tokens(self) -> bool:
        return self.cfg.skip_special_tokens

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
        from lorasae.sae.io import save_sae

        return save_sae(self, folder, extra=extra or None)

    @classmethod
    def load(
        cls, folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | str | None = None
    ) -> TopKSAE:
        from lorasae.sae.io import load_topk_sae

        return load_topk_sae(folder, device=device, dtype=dtype)
