"""SAE architectures by name (`train_sae.py --architecture`), and loading any of our saved folders by the
architecture its cfg.json names.

| name | class | cfg.json `architecture` | loads with |
|---|---|---|---|
| `topk` (default, the paper's) | `TopKSAE` (topk.py) | `topk` | sae_lens, `load_sae` |
| `relu` (ReLU + decoder-norm-weighted L1) | `ReluSAE` (relu.py) | `standard` | sae_lens, `load_sae` |
| `crosscoder` (several layers, shared latents) | `Crosscoder` (crosscoder.py) | `crosscoder` | our `load_sae` / `Crosscoder.load` only |
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lorasae.sae.crosscoder import Crosscoder
from lorasae.sae.io import read_cfg
from lorasae.sae.relu import SAE_LENS_ARCHITECTURE as RELU_ON_DISK
from lorasae.sae.relu import ReluSAE
from lorasae.sae.topk import TopKSAE

SAE_CLASSES: dict[str, type[nn.Module]] = {"topk": TopKSAE, "relu": ReluSAE, "crosscoder": Crosscoder}
ON_DISK = {"topk": "topk", "relu": RELU_ON_DISK, "crosscoder": "crosscoder"}
"""Our architecture name -> the `architecture` field its cfg.json holds."""


def sae_class(name: str) -> type[nn.Module]:
    """The class of architecture `name`, with an error listing the known ones."""
    if name not in SAE_CLASSES:
        raise ValueError(f"Unknown SAE architecture {name!r}: use one of {', '.join(SAE_CLASSES)}.")
    return SAE_CLASSES[name]


def architecture_of(folder: str | Path) -> str:
    """Our architecture name of a saved SAE folder (from its cfg.json)."""
    on_disk = read_cfg(folder).get("architecture", "standard")
    names = {v: k for k, v in ON_DISK.items()}
    if on_disk not in names:
        raise ValueError(
            f"{folder}: architecture {on_disk!r} is not one of ours ({', '.join(ON_DISK.values())})"
        )
    return names[on_disk]


def load_ours(folder: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A folder saved by train_sae.py, as the class of its architecture."""
    cls = sae_class(architecture_of(folder))
    return cls.load(folder, device=device)  # type: ignore[attr-defined]


__all__ = ["ON_DISK", "SAE_CLASSES", "architecture_of", "load_ours", "sae_class"]
