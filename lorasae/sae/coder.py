"""What the dictionaries of issue 28 (BatchTopK, Matryoshka, JumpReLU, transcoders) share: the result of
a training forward (`CoderOutput`), the cfg.json they write in SAELens's on-disk format, and the
provenance fields they read back.

`CoderOutput` extends the TopK SAE's `SaeOutput` fields with the two terms an objective needs beyond
them, so one training loop serves every architecture:

    loss = recon + auxk_alpha · auxk_loss + coefficient(step) · l1

`recon` is the reconstruction term (the FVU, except Matryoshka's sum of prefix FVUs); `l1` is the
sparsity penalty the trainer multiplies by its (warmed-up) coefficient: a ReLU transcoder's
decoder-norm-weighted L1, JumpReLU's L0 penalty, 0 for the TopK-family (their sparsity is the k).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lorasae.sae.config import layer_from_hook_name
from lorasae.sae.io import sae_lens_cfg


class CoderOutput(NamedTuple):
    x_hat: Tensor
    """Reconstruction (of the target, for a transcoder), [..., d_out]."""
    top_acts: Tensor
    """Active latents' activations [N, k'] (zero-padded), or all latents [N, d_sae] for dense codes."""
    top_idx: Tensor
    """Their indices, same shape as ``top_acts``."""
    fvu: Tensor
    """‖x̂ − y‖² / Σ‖y − mean(y)‖² over the batch (y = x, or the transcoder's target)."""
    auxk_loss: Tensor
    """AuxK dead-latent loss (0 unless a dead_mask with dead latents was given; TopK-family only)."""
    l1: Tensor
    """Sparsity penalty to multiply by the step's coefficient (0 where k sets the sparsity)."""
    recon: Tensor
    """Reconstruction term of the objective: ``fvu``, or Matryoshka's sum of prefix FVUs."""


def dense_indices(z: Tensor) -> Tensor:
    """0..d_sae-1 for every token of dense latents z [..., d_sae] (an expanded view, no memory)."""
    return torch.arange(z.shape[-1], device=z.device).expand(z.shape)


def coder_cfg_dict(
    cfg: Any,
    dtype: torch.dtype,
    architecture: str,
    ours: str,
    fields: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """cfg.json of a dictionary: SAELens's ``architecture`` and top-level ``fields``, SAELens
    ``metadata`` keys, and under ``metadata.lorasae`` our architecture name ``ours`` plus ``extra``."""
    out = sae_lens_cfg(cfg, dtype, None, architecture=architecture)
    out.pop("k", None)
    out.update(fields or {})
    out["metadata"].update(metadata or {})
    out["metadata"]["lorasae"] = {"format": 1, "architecture": ours, **dict(extra or {})}
    return out


def provenance(raw: Mapping[str, Any]) -> dict[str, Any]:
    """model_name, hook_name, hook_layer, dtype, skip_special_tokens of a SAELens cfg.json dict."""
    meta = {**raw, **(raw.get("metadata") or {})}
    hook_name = meta.get("hook_name")
    layer = meta.get("hook_layer")
    if layer is None and hook_name:
        layer = layer_from_hook_name(str(hook_name))
    return {
        "model_name": meta.get("model_name"),
        "hook_name": hook_name,
        "hook_layer": None if layer is None else int(layer),
        "dtype": str(raw.get("dtype") or "float32"),
        "skip_special_tokens": bool(meta.get("exclude_special_tokens") or False),
    }


def ours_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metadata.lorasae`` dict of a cfg.json (empty for a folder written by another tool)."""
    return dict((raw.get("metadata") or {}).get("lorasae") or {})


def training_details(raw: Mapping[str, Any]) -> dict[str, Any]:
    """SAELens's ``metadata.training_architecture_details`` (k, widths, ... of the trained SAE)."""
    return dict((raw.get("metadata") or {}).get("training_architecture_details") or {})


__all__ = ["CoderOutput", "coder_cfg_dict", "dense_indices", "ours_of", "provenance", "training_details"]
