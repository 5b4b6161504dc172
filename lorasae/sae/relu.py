"""The ReLU + L1 ("vanilla") sparse autoencoder, SAELens's ``standard`` architecture.

``z = ReLU((x - b_dec) W_enc + b_enc)``, ``x_hat = z W_dec + b_dec``. Training loss (``forward``):
``FVU + λ · mean over tokens of Σ_i z_i ‖W_dec_i‖``: the L1 penalty weighted by each latent's decoder norm,
as SAELens's standard SAE trains it (so shrinking z while growing W_dec buys nothing and the decoder
needs no unit-norm constraint). The reconstruction term is by default the FVU, as for TopK
(objectives.py), so λ is relative to a scale-free reconstruction error; `--recon_loss sum_sq` trains on
the squared error summed over d per token instead, the term of SAELens and train-SAE, so that their λ
(train-SAE's `sparsity: 5.0`) means the same here. λ is given per step by the trainer (sparsity warm-up,
`lorasae.train.schedule.sparsity_coef`).

Saved in SAELens's on-disk format with ``architecture: "standard"`` (``sae_lens.SAE.load_from_disk``
loads it as a ``StandardSAE``); ``ReluSAE.load`` reads it back. To share the TopK SAE's callers
(training statistics, dead-latent counts, splicing), ``encode_topk`` returns all latents with their
indices, and ``forward`` returns the TopK ``SaeOutput`` fields plus ``l1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lorasae.core.losses import fvu
from lorasae.sae.attributes import DictionaryAttributes
from lorasae.sae.config import dtype_name, to_torch_dtype
from lorasae.sae.io import (
    CFG_FILENAME,
    WEIGHTS_FILENAME,
    SaeFormatError,
    read_cfg,
    read_weights,
    sae_lens_cfg,
    write_sae_folder,
)

SAE_LENS_ARCHITECTURE = "standard"
DECODER_INIT_NORM = 0.1
"""Initial norm of each decoder row (SAELens's `decoder_init_norm` / Anthropic's April 2024 update);
the encoder starts as the decoder's transpose."""


@dataclass
class ReluSaeConfig:
    """Shape and provenance of a ReLU SAE (the fields of `SaeConfig` that a ReLU SAE has: no k)."""

    d_in: int
    d_sae: int
    model_name: str | None = None
    hook_layer: int | None = None
    hook_name: str | None = None
    dtype: str = "float32"
    skip_special_tokens: bool = False

    def __post_init__(self) -> None:
        if min(self.d_in, self.d_sae) < 1:
            raise ValueError(f"ReluSaeConfig needs positive d_in, d_sae (got {self.d_in}, {self.d_sae})")
        if self.hook_name is None and self.hook_layer is not None:
            self.hook_name = f"blocks.{self.hook_layer}.hook_resid_post"
        self.dtype = dtype_name(to_torch_dtype(self.dtype))


class ReluOutput(NamedTuple):
    x_hat: Tensor
    top_acts: Tensor
    """All latents z [N, d_sae] (the 'active' ones are the non-zero entries)."""
    top_idx: Tensor
    """0..d_sae-1 for every token (an expanded view, no memory)."""
    fvu: Tensor
    auxk_loss: Tensor
    """Always 0 (AuxK is a TopK loss)."""
    l1: Tensor
    """Mean over tokens of Σ_i z_i ‖W_dec_i‖ (multiply by λ)."""


class ReluSAE(DictionaryAttributes, nn.Module):
    """ReLU SAE with parameters in SAELens's layout: ``W_enc`` [d_in, d_sae], ``b_enc``, ``W_dec``
    [d_sae, d_in], ``b_dec``."""

    def __init__(self, cfg: ReluSaeConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        dt = to_torch_dtype(cfg.dtype)
        w = torch.randn(cfg.d_sae, cfg.d_in, device=device, dtype=dt)
        w = DECODER_INIT_NORM * w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, device=device, dtype=dt))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=dt))

    def encode(self, x: Tensor) -> Tensor:
        """Latents z [..., d_sae]."""
        return torch.relu((x.to(self.dtype) - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, z: Tensor) -> Tensor:
        return z.to(self.dtype) @ self.W_dec + self.b_dec

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def encode_topk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z, indices 0..d_sae-1): the TopK SAE's interface, every latent 'selected'."""
        z = self.encode(x)
        return z, torch.arange(self.cfg.d_sae, device=z.device).expand(z.shape)

    def decode_topk(self, acts: Tensor, idx: Tensor) -> Tensor:
        return self.decode(acts)

    def l1(self, z: Tensor) -> Tensor:
        """Mean over tokens of Σ_i z_i ‖W_dec_i‖."""
        return (z * self.W_dec.norm(dim=1)).sum(-1).mean()

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> ReluOutput:
        """Reconstruction, FVU and the weighted L1 of x [N, d_in] (``dead_mask`` is accepted and unused)."""
        x = x.to(self.dtype)
        z, idx = self.encode_topk(x)
        x_hat = self.decode(z)
        flat = x.reshape(-1, self.cfg.d_in)
        return ReluOutput(
            x_hat, z, idx, fvu(flat, x_hat.reshape(-1, self.cfg.d_in)), x_hat.new_zeros(()), self.l1(z)
        )

    # the training loop's TopK constraints: the decoder-norm-weighted L1 makes the norms free parameters
    def set_decoder_norm_to_unit_norm(self) -> None:
        """Nothing: a ReLU SAE's decoder norms are not constrained (its L1 is weighted by them)."""

    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Nothing, for the same reason."""

    # ---- persistence (SAELens on-disk format, architecture "standard") ------------------------------
    def save(self, folder: str | Path, **extra: Any) -> Path:
        weights = {name: getattr(self, name).detach() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
        cfg = sae_lens_cfg(self.cfg, self.dtype, extra, architecture=SAE_LENS_ARCHITECTURE)  # type: ignore[arg-type]
        return write_sae_folder(folder, cfg, weights)

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu") -> ReluSAE:
        folder = Path(folder)
        raw = read_cfg(folder)
        if raw.get("architecture") != SAE_LENS_ARCHITECTURE or not raw.get("apply_b_dec_to_input", True):
            raise SaeFormatError(f"{folder / CFG_FILENAME} is not a plain standard (ReLU) SAE")
        meta = raw.get("metadata") or {}
        names = set(asdict(ReluSaeConfig(1, 1)))
        cfg = ReluSaeConfig(
            **{k: v for k, v in {**raw, **meta}.items() if k in names and k != "skip_special_tokens"},
            skip_special_tokens=bool(meta.get("exclude_special_tokens")),
        )
        weights = read_weights(folder)
        sae = cls(cfg, device="meta")
        try:
            sae.load_state_dict({n: weights[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec")}, assign=True)
        except (KeyError, RuntimeError) as err:
            raise SaeFormatError(f"{folder / WEIGHTS_FILENAME} does not match its cfg.json: {err!r}") from err
        return sae.to(device)
