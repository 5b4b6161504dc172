"""Loading what was found, with every check done once: the model (and its tokenizer), `{layer: SAE}`
(width against the model's d_model, layer in range, one SAE per layer, frozen, on the model's device,
float32 unless asked), and the adapter (attached, or merged into the weights)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from lorasae.core.errors import LorasaeError
from lorasae.core.preflight import check_finite_weights, check_sae_finite
from lorasae.model.load import ModelShape, check_layer, load_model, unwrap
from lorasae.sae.capabilities import Consumer, check_consumer
from lorasae.sae.crosscoder import Crosscoder
from lorasae.sae.crosscoder_splice import coder_layers
from lorasae.sae.io import CFG_FILENAME, WEIGHTS_FILENAME, read_cfg, read_weights
from lorasae.sae.sources import SaeShapeError, check_sae_fits, load_sae, sae_hook_layer
from lorasae.store.sae_records import SaeModelMismatchError, check_sae_model
from lorasae.store.saes import SaeRef, SaeRun


class SaeMismatchError(LorasaeError, ValueError):
    """An SAE names no usable layer, or two SAEs claim the same layer."""


def check_run_layers(run: SaeRun, shape: ModelShape) -> None:
    """Before loading: every layer the run names exists in the model, and no layer has two SAEs."""
    known = [r.layer for r in run.refs if r.layer is not None]
    for layer in known:
        check_layer(shape, layer)
    if len(set(known)) != len(known):
        raise SaeMismatchError(f"Two SAEs for one layer ({known}): give one SAE per layer.")


def preflight_saes(sources: Sequence[str], d_model: int | None = None) -> None:
    """Checks on local SAE folders before any model, data or adapter loads: the width recorded in
    cfg.json fits `d_model`, and the weights are finite. (Hub releases are checked by `load_saes`.)"""
    for source in sources:
        folder = Path(source)
        if d_model is not None and (folder / CFG_FILENAME).is_file():
            cfg = read_cfg(folder)
            widths = cfg.get("d_in")
            for d_in in widths if isinstance(widths, list) else [widths] if widths is not None else []:
                # a crosscoder records one input width per source layer; a transcoder its output width too
                shape = SimpleNamespace(d_in=d_in, d_out=cfg.get("d_out"))
                check_sae_fits(SimpleNamespace(cfg=shape), d_model, f"The SAE {source}")
        if (folder / WEIGHTS_FILENAME).is_file():
            check_finite_weights(read_weights(folder), folder)


def load_saes(
    refs: SaeRun | Sequence[SaeRef],
    model: nn.Module,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.float32,
    suite: Consumer | None = None,
) -> dict[int, Any]:
    """`{layer: SAE}` for the refs, checked against `model` (the model their run records name, width,
    layer range) and, when given, against what `suite` can evaluate (`lorasae.sae.capabilities`),
    frozen, in eval mode."""
    refs = refs.refs if isinstance(refs, SaeRun) else tuple(refs)
    shape = ModelShape.of(model)
    device = device if device is not None else next(model.parameters()).device
    saes: dict[int, Any] = {}
    model_path = str(getattr(unwrap(model), "name_or_path", "") or "")
    for ref in refs:
        check_sae_model(ref.source, model_path)  # its run record names this model (or says nothing)
        sae = load_sae(ref.source, device=device, dtype=dtype, layer=ref.layer)
        if suite is not None:
            check_consumer(suite, sae, ref.source)
        if isinstance(sae, Crosscoder):  # one dictionary spliced at each of its source layers
            _add_crosscoder(saes, sae, ref.source, shape)
            continue
        hook = sae_hook_layer(sae)
        layer = ref.layer if ref.layer is not None else hook
        if layer is None:
            raise SaeMismatchError(
                f"The SAE {ref.source} does not say which layer it reads: pass its layer "
                "(--sae_layer / --layer)."
            )
        check_layer(shape, layer)
        check_sae_fits(sae, shape.d_model, f"The SAE {ref.source}")
        if isinstance(sae, nn.Module):
            check_sae_finite(sae, ref.source)
        if hook is not None and hook != layer:
            print(
                f"Note: the SAE {ref.source} was trained on layer {hook}; splicing it at layer {layer} as asked."
            )
        if layer in saes:
            raise SaeMismatchError(f"Two SAEs for layer {layer}: give one SAE per layer.")
        if hasattr(sae, "requires_grad_"):
            sae.requires_grad_(False)
        saes[layer] = sae.eval()
    return saes


def _add_crosscoder(saes: dict[int, Any], coder: Crosscoder, source: str, shape: ModelShape) -> None:
    """Register `coder` at every source layer it reads (checked: layer range, width, free layer)."""
    for layer, d_in in zip(coder_layers(coder), coder.cfg.d_in):
        check_layer(shape, layer)
        if d_in != shape.d_model:
            raise SaeShapeError(
                f"The crosscoder {source} reads {d_in}-dimensional activations at layer {layer}, but the "
                f"model's d_model is {shape.d_model}: it was trained on another model."
            )
        if layer in saes:
            raise SaeMismatchError(f"Two SAEs for layer {layer}: give one SAE per layer.")
        saes[layer] = coder
    coder.requires_grad_(False)
    coder.eval()


@dataclass
class Bundle:
    """A model ready to evaluate: the model (adapter attached or merged when one was asked for), its
    tokenizer, the SAEs by layer, what they were loaded from, and the adapter folder."""

    model: nn.Module
    tokenizer: Any
    saes: dict[int, Any] = field(default_factory=dict)
    refs: tuple[SaeRef, ...] = ()
    adapter: Path | None = None
    merged: bool = False

    @property
    def layer(self) -> int:
        """The layer of the (first) SAE."""
        if not self.saes:
            raise ValueError("no SAE loaded")
        return min(self.saes)

    @property
    def sae(self) -> Any:
        return self.saes[self.layer]

    @property
    def shape(self) -> ModelShape:
        return ModelShape.of(self.model)


def load_bundle(
    model_name: str,
    refs: SaeRun | Sequence[SaeRef] = (),
    adapter: Path | None = None,
    merge: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.float32,
    sae_dtype: torch.dtype | str = torch.float32,
    suite: Consumer | None = None,
) -> Bundle:
    """Load the model, its SAEs (checked, against `suite` too when given), and the adapter (a
    PeftModel, or merged when `merge`)."""
    model, tokenizer = load_model(model_name, device, dtype)
    model.requires_grad_(False)
    saes = load_saes(refs, model, dtype=sae_dtype, suite=suite) if refs else {}
    if adapter is not None:
        from lorasae.model.adapters import load_peft_model, merge_adapter

        model = merge_adapter(model, adapter) if merge else load_peft_model(model, adapter)
        model.requires_grad_(False)
        model.eval()
    refs = refs.refs if isinstance(refs, SaeRun) else tuple(refs)
    return Bundle(model, tokenizer, saes, refs, adapter, merge and adapter is not None)


__all__ = [
    "Bundle",
    "SaeMismatchError",
    "SaeModelMismatchError",
    "SaeShapeError",
    "check_run_layers",
    "load_bundle",
    "load_saes",
]
