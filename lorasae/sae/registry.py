"""SAE architectures by name (`train_sae.py --architecture`), and loading any of our saved folders by the
architecture its cfg.json names.

| name | class | cfg.json `architecture` | loads with |
|---|---|---|---|
| `topk` (default, the paper's) | `TopKSAE` (topk.py) | `topk` | sae_lens, `load_sae` |
| `relu` (ReLU + decoder-norm-weighted L1) | `ReluSAE` (relu.py) | `standard` | sae_lens, `load_sae` |
| `crosscoder` (several layers, shared latents) | `Crosscoder` (crosscoder.py) | `crosscoder` | our `load_sae` / `Crosscoder.load` only |
| `batchtopk` (top k·B over the batch) | `BatchTopKSAE` (batchtopk.py) | `jumprelu` + `metadata.training_architecture: batchtopk` | sae_lens (as JumpReLU), `load_sae` |
| `matryoshka` (BatchTopK, nested prefixes) | `MatryoshkaSAE` (matryoshka.py) | `jumprelu` + `metadata.training_architecture: matryoshka_batchtopk` | sae_lens (as JumpReLU), `load_sae` |
| `jumprelu` (per-latent thresholds, STE) | `JumpReLUSAE` (jumprelu.py) | `jumprelu` | sae_lens, `load_sae` |
| `transcoder` (MLP in -> MLP out) | `Transcoder` (transcoder.py) | `transcoder` (ReLU) / `topk_transcoder` | sae_lens (ReLU), `load_sae` |
| `skip_transcoder` (+ W_skip x) | `Transcoder` (skip=True) | `skip_transcoder` (ReLU) / `topk_skip_transcoder` | sae_lens (ReLU), `load_sae` |

Several of ours share an on-disk `architecture` (SAELens saves a trained BatchTopK / Matryoshka as a
JumpReLU); `architecture_from_cfg` tells them apart by `metadata.lorasae.architecture` (ours) or
SAELens's `metadata.training_architecture`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasae.sae.batchtopk import BatchTopKSAE
from lorasae.sae.crosscoder import Crosscoder
from lorasae.sae.io import read_cfg
from lorasae.sae.jumprelu import JumpReLUSAE
from lorasae.sae.matryoshka import MatryoshkaSAE
from lorasae.sae.relu import SAE_LENS_ARCHITECTURE as RELU_ON_DISK
from lorasae.sae.relu import ReluSAE
from lorasae.sae.topk import TopKSAE
from lorasae.sae.transcoder import ON_DISK as TRANSCODER_ON_DISK
from lorasae.sae.transcoder import Transcoder

SAE_CLASSES: dict[str, type[nn.Module]] = {
    "topk": TopKSAE,
    "relu": ReluSAE,
    "crosscoder": Crosscoder,
    "batchtopk": BatchTopKSAE,
    "matryoshka": MatryoshkaSAE,
    "jumprelu": JumpReLUSAE,
    "transcoder": Transcoder,
    "skip_transcoder": Transcoder,
}
ON_DISK = {
    "topk": "topk",
    "relu": RELU_ON_DISK,
    "crosscoder": "crosscoder",
    "batchtopk": "jumprelu",
    "matryoshka": "jumprelu",
    "jumprelu": "jumprelu",
    "transcoder": "transcoder",
    "skip_transcoder": "skip_transcoder",
}
"""Our architecture name -> the `architecture` field its cfg.json holds (a ReLU transcoder's; a TopK
transcoder's is `topk_transcoder` / `topk_skip_transcoder`)."""
_TRAINED_AS = {"batchtopk": "batchtopk", "matryoshka_batchtopk": "matryoshka"}
"""SAELens's `metadata.training_architecture` of a `jumprelu` folder -> ours."""
_TRANSCODERS = {
    on_disk: "skip_transcoder" if skip else "transcoder" for (_, skip), on_disk in TRANSCODER_ON_DISK.items()
}


def sae_class(name: str) -> type[nn.Module]:
    """The class of architecture `name`, with an error listing the known ones."""
    if name not in SAE_CLASSES:
        raise ValueError(f"Unknown SAE architecture {name!r}: use one of {', '.join(SAE_CLASSES)}.")
    return SAE_CLASSES[name]


def architecture_from_cfg(cfg: Mapping[str, Any]) -> str | None:
    """Our architecture name for a SAELens-format cfg.json dict (None when none of ours models it)."""
    on_disk = cfg.get("architecture", "standard")
    meta = cfg.get("metadata") or {}
    ours = (meta.get("lorasae") or {}).get("architecture")
    if (
        ours in SAE_CLASSES
        and ON_DISK[ours] == on_disk
        or ours in _TRANSCODERS.values()
        and on_disk in _TRANSCODERS
    ):
        return ours
    if on_disk == "jumprelu":
        return _TRAINED_AS.get(meta.get("training_architecture") or "", "jumprelu")
    if on_disk in _TRANSCODERS:
        return _TRANSCODERS[on_disk]
    names = {v: k for k, v in ON_DISK.items() if k not in ("batchtopk", "matryoshka")}
    return names.get(on_disk)


def architecture_of(folder: str | Path) -> str:
    """Our architecture name of a saved SAE folder (from its cfg.json)."""
    name = architecture_from_cfg(read_cfg(folder))
    if name is None:
        on_disk = read_cfg(folder).get("architecture", "standard")
        known = sorted(set(ON_DISK.values()) | set(_TRANSCODERS))
        raise ValueError(f"{folder}: architecture {on_disk!r} is not one of ours ({', '.join(known)})")
    return name


def load_ours(folder: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A folder saved by train_sae.py, as the class of its architecture."""
    cls = sae_class(architecture_of(folder))
    return cls.load(folder, device=device)  # type: ignore[attr-defined]


__all__ = ["ON_DISK", "SAE_CLASSES", "architecture_from_cfg", "architecture_of", "load_ours", "sae_class"]
