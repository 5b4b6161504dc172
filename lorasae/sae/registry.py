"""The dictionary architectures, one `Architecture` entry each: the class, its config, its save format,
and what the trainer needs from it (which rows it reads, its sparsity term, its per-step hooks). Also
loading any of our saved folders by the architecture its cfg.json names.

| name | class | cfg.json `architecture` | loads with | rows | sparsity |
|---|---|---|---|---|---|
| `topk` (default, the paper's) | `TopKSAE` (topk.py) | `topk` | sae_lens, `load_sae` | layer | topk |
| `relu` (ReLU + decoder-norm-weighted L1) | `ReluSAE` (relu.py) | `standard` | sae_lens, `load_sae` | layer | l1 |
| `crosscoder` (several layers, shared latents) | `Crosscoder` (crosscoder.py) | `crosscoder` | our `load_sae` / `Crosscoder.load` only | sources | topk or l1 |

Adding an architecture: its module in lorasae/sae/ (class + config + save/load) and one entry below;
train_sae.py's `--architecture` accepts every name in `ARCHITECTURES` (`lorasae/train/options.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasae.sae.config import SaeConfig
from lorasae.sae.crosscoder import Crosscoder, CrosscoderConfig
from lorasae.sae.io import read_cfg
from lorasae.sae.relu import SAE_LENS_ARCHITECTURE as RELU_ON_DISK
from lorasae.sae.relu import ReluSAE, ReluSaeConfig
from lorasae.sae.topk import TopKSAE


@dataclass(frozen=True)
class DictionarySpec:
    """What a training run asks of a dictionary, whatever its architecture (train_sae.py builds it from
    its resolved config): shape, provenance, sources, and the architecture's own settings."""

    d_in: int
    d_sae: int
    k: int
    model_name: str
    hook_layer: int
    hook_layers: list[int] = field(default_factory=list)  # sources of a multi-source dictionary
    source_names: list[str] = field(default_factory=list)
    model_names: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # --sae_kwargs (e.g. crosscoder_activation)


def _no_op(sae: nn.Module) -> None:
    del sae


def _unit_norm(sae: nn.Module) -> None:
    sae.set_decoder_norm_to_unit_norm()  # type: ignore[operator]


def _remove_parallel(sae: nn.Module) -> None:
    sae.remove_gradient_parallel_to_decoder_directions()  # type: ignore[operator]


@dataclass(frozen=True)
class Architecture:
    """One dictionary architecture: everything the loader and the trainer need, in one place."""

    name: str
    sae_class: type[nn.Module]
    config_class: type
    on_disk: str
    """Its save format: the `architecture` field of its cfg.json (SAELens's name where SAELens has it)."""
    loads_in_sae_lens: bool
    make_config: Callable[[DictionarySpec], Any]
    """Its config for a training run's `DictionarySpec`."""
    rows: str = "layer"
    """What the trainer feeds it: `layer` (rows [n, d] of one hook point; its forward returns an
    `SaeOutput`-like object and the trainer's objective computes the loss) or `sources` (a list of rows,
    one per source; its forward takes `sparsity_coef` and returns its own `.loss`)."""
    sparsity: Callable[[dict[str, Any]], str] = lambda settings: "topk"
    """From its settings (`DictionarySpec.settings`): `topk` (no penalty) or `l1` (the trainer adds
    λ·out.l1, λ = --sparsity with its warm-up)."""
    prepare_gradients: Callable[[nn.Module], None] = _remove_parallel
    """Before clipping, on the SAE (e.g. remove the gradient parallel to the unit-norm decoder rows)."""
    after_update: Callable[[nn.Module], None] = _unit_norm
    """After each optimiser step: per-step state (decoder norms; a BatchTopK/JumpReLU threshold estimate)."""
    reuses_prefix: bool = True
    """The curve's spliced CE may reuse the clean residual up to its layer (`lorasae/prefix.py`)."""

    def build(self, spec: DictionarySpec, device: torch.device | str) -> nn.Module:
        """A freshly initialised dictionary (its class's own initialisation, under the caller's seed)."""
        return self.sae_class(self.make_config(spec), device=device)  # type: ignore[call-arg]


def _crosscoder_config(spec: DictionarySpec) -> CrosscoderConfig:
    return CrosscoderConfig(
        d_in=[spec.d_in] * len(spec.hook_layers),
        d_sae=spec.d_sae,
        k=spec.k,
        activation=spec.settings.get("crosscoder_activation", "topk"),
        sources=list(spec.source_names),
        model_names=list(spec.model_names),
        hook_layers=list(spec.hook_layers),
    )


def _crosscoder_after_update(coder: nn.Module) -> None:
    if coder.cfg.activation == "topk":  # type: ignore[union-attr]  # the ReLU variant's L1 weighs the norms instead
        coder.set_decoder_norm_to_unit_norm()  # type: ignore[operator]


ARCHITECTURES: dict[str, Architecture] = {
    "topk": Architecture(
        "topk", TopKSAE, SaeConfig, "topk", True,
        lambda s: SaeConfig(d_in=s.d_in, d_sae=s.d_sae, k=s.k, model_name=s.model_name, hook_layer=s.hook_layer),
    ),
    "relu": Architecture(
        "relu", ReluSAE, ReluSaeConfig, RELU_ON_DISK, True,
        lambda s: ReluSaeConfig(d_in=s.d_in, d_sae=s.d_sae, model_name=s.model_name, hook_layer=s.hook_layer),
        sparsity=lambda settings: "l1",
    ),
    "crosscoder": Architecture(
        "crosscoder", Crosscoder, CrosscoderConfig, "crosscoder", False, _crosscoder_config,
        rows="sources",
        sparsity=lambda settings: "l1" if settings.get("crosscoder_activation") == "relu" else "topk",
        prepare_gradients=_no_op,
        after_update=_crosscoder_after_update,
        reuses_prefix=False,  # its curve splices every source layer in turn: the full forward each time
    ),
}  # fmt: skip

SAE_CLASSES: dict[str, type[nn.Module]] = {name: a.sae_class for name, a in ARCHITECTURES.items()}
ON_DISK = {name: a.on_disk for name, a in ARCHITECTURES.items()}
"""Our architecture name -> the `architecture` field its cfg.json holds."""


def architecture(name: str) -> Architecture:
    """The registry entry of `name`, with an error listing the known ones."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown SAE architecture {name!r}: use one of {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[name]


def sae_class(name: str) -> type[nn.Module]:
    """The class of architecture `name`, with an error listing the known ones."""
    return architecture(name).sae_class


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


__all__ = [
    "ARCHITECTURES",
    "ON_DISK",
    "SAE_CLASSES",
    "Architecture",
    "DictionarySpec",
    "architecture",
    "architecture_of",
    "load_ours",
    "sae_class",
]
