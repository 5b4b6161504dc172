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

Training (`train_sae.py --architecture`): `ARCHITECTURES` holds one `Architecture` entry per architecture
train_sae.py trains, carrying what the loader and the trainer need: the class, its config, its save format,
which rows it reads, its sparsity term and its per-step hooks (`lorasae/train/parts.py` picks the parts
from them). Adding an architecture: its module in lorasae/sae/ (class + config + save/load) and one entry
in each table below; train_sae.py's `--architecture` accepts every name in `ARCHITECTURES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasae.sae.batchtopk import BatchTopKConfig, BatchTopKSAE
from lorasae.sae.config import SaeConfig
from lorasae.sae.crosscoder import Crosscoder, CrosscoderConfig
from lorasae.sae.io import read_cfg
from lorasae.sae.jumprelu import JumpReLUConfig, JumpReLUSAE
from lorasae.sae.matryoshka import MatryoshkaConfig, MatryoshkaSAE
from lorasae.sae.relu import SAE_LENS_ARCHITECTURE as RELU_ON_DISK
from lorasae.sae.relu import ReluSAE, ReluSaeConfig
from lorasae.sae.topk import TopKSAE
from lorasae.sae.transcoder import ON_DISK as TRANSCODER_ON_DISK
from lorasae.sae.transcoder import Transcoder, TranscoderConfig

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


def _unit_norm(sae: nn.Module, out: Any) -> None:
    del out
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
    `SaeOutput`/`CoderOutput`-like object and the trainer's objective computes the loss), `mlp` (pairs
    (MLP input, MLP output) of the layer passed as `sae(x, dead_mask, target=y)`, spliced in place of the
    MLP output: `lorasae/train/transcoder_parts.py`) or `sources` (a list of rows, one per source; its
    forward takes `sparsity_coef` and returns its own `.loss`)."""
    sparsity: Callable[[dict[str, Any]], str] = lambda settings: "topk"
    """From its settings (`DictionarySpec.settings`): `topk` (no penalty), `l1` (the trainer adds
    λ·out.l1, λ = --sparsity with its warm-up from λ/N) or `l0` (λ·out.l1, λ = --l0_coefficient rising
    from 0 over --l0_warmup_steps: JumpReLU's penalty, SAELens's schedule)."""
    prepare_gradients: Callable[[nn.Module], None] = _remove_parallel
    """Before clipping, on the SAE (e.g. remove the gradient parallel to the unit-norm decoder rows)."""
    after_update: Callable[[nn.Module, Any], None] = _unit_norm
    """After each optimiser step, on the SAE and that step's output: its constraints and per-step state
    (unit-norm decoder rows; for the `lorasae.sae.coder` classes, then `sae.after_step(out)`: BatchTopK's
    threshold estimate)."""
    reuses_prefix: bool = True
    """The curve's spliced CE may reuse the clean residual up to the last layer its splice leaves unchanged
    (its layer; a transcoder's: the one before, `lorasae/model/prefix.py`)."""

    def build(self, spec: DictionarySpec, device: torch.device | str) -> nn.Module:
        """A freshly initialised dictionary (its class's own initialisation, under the caller's seed)."""
        return self.sae_class(self.make_config(spec), device=device)  # type: ignore[call-arg]


def _coder_after_update(sae: nn.Module, out: Any) -> None:
    """The `lorasae.sae.coder` classes: their decoder constraint, then their own per-step state."""
    sae.set_decoder_norm_to_unit_norm()  # type: ignore[operator]
    sae.after_step(out)  # type: ignore[operator]


def _batchtopk_config(spec: DictionarySpec) -> BatchTopKConfig:
    return BatchTopKConfig(
        d_in=spec.d_in, d_sae=spec.d_sae, k=spec.k, model_name=spec.model_name, hook_layer=spec.hook_layer,
        threshold_lr=spec.settings.get("threshold_lr", 0.01),
    )  # fmt: skip


def default_matryoshka_widths(d_sae: int) -> list[int]:
    """d_sae/16, d_sae/4 (and d_sae): three nested prefixes, each 4× the last (distinct, ≥ 1)."""
    return sorted({max(1, d_sae // 16), max(1, d_sae // 4)} - {d_sae})


def _matryoshka_config(spec: DictionarySpec) -> MatryoshkaConfig:
    widths = list(spec.settings.get("matryoshka_widths") or default_matryoshka_widths(spec.d_sae))
    return MatryoshkaConfig(
        d_in=spec.d_in, d_sae=spec.d_sae, k=spec.k, model_name=spec.model_name, hook_layer=spec.hook_layer,
        threshold_lr=spec.settings.get("threshold_lr", 0.01), widths=widths,
    )  # fmt: skip


def _jumprelu_config(spec: DictionarySpec) -> JumpReLUConfig:
    s = spec.settings
    return JumpReLUConfig(
        d_in=spec.d_in, d_sae=spec.d_sae, model_name=spec.model_name, hook_layer=spec.hook_layer,
        bandwidth=s.get("jumprelu_bandwidth", 0.001), init_threshold=s.get("jumprelu_init_threshold", 0.001),
        sparsity_loss=s.get("jumprelu_sparsity_loss", "step"),
    )  # fmt: skip


def _transcoder_config(skip: bool) -> Callable[[DictionarySpec], TranscoderConfig]:
    def make(spec: DictionarySpec) -> TranscoderConfig:
        activation = spec.settings.get("transcoder_activation", "relu")
        return TranscoderConfig(
            d_in=spec.d_in, d_sae=spec.d_sae, activation=activation, k=spec.k if activation == "topk" else None,
            skip=skip, model_name=spec.model_name, hook_layer=spec.hook_layer,
        )  # fmt: skip

    return make


def _transcoder_sparsity(settings: dict[str, Any]) -> str:
    return "topk" if settings.get("transcoder_activation", "relu") == "topk" else "l1"


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


def _crosscoder_after_update(coder: nn.Module, out: Any) -> None:
    del out
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
    "batchtopk": Architecture(
        "batchtopk", BatchTopKSAE, BatchTopKConfig, "jumprelu", True, _batchtopk_config,
        after_update=_coder_after_update,
    ),
    "matryoshka": Architecture(
        "matryoshka", MatryoshkaSAE, MatryoshkaConfig, "jumprelu", True, _matryoshka_config,
        after_update=_coder_after_update,
    ),
    "jumprelu": Architecture(
        "jumprelu", JumpReLUSAE, JumpReLUConfig, "jumprelu", True, _jumprelu_config,
        sparsity=lambda settings: "l0",
        after_update=_coder_after_update,  # its unit-norm decoder (step mode) and its after_step (none)
    ),
    **{
        name: Architecture(
            name, Transcoder, TranscoderConfig, name, True, _transcoder_config(name == "skip_transcoder"),
            rows="mlp",  # (MLP input, MLP output) at the layer: lorasae/train/transcoder_parts.py
            sparsity=_transcoder_sparsity,
            after_update=_coder_after_update,
            # layer L's MLP is replaced, its attention runs again: the prefix up to L − 1 is reused
        )
        for name in ("transcoder", "skip_transcoder")
    },
}  # fmt: skip


def architecture(name: str) -> Architecture:
    """The registry entry of `name`, with an error listing the known ones."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown SAE architecture {name!r}: use one of {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[name]


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


__all__ = [
    "ARCHITECTURES",
    "ON_DISK",
    "SAE_CLASSES",
    "Architecture",
    "DictionarySpec",
    "architecture",
    "architecture_from_cfg",
    "architecture_of",
    "load_ours",
    "sae_class",
]
