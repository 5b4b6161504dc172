"""What the steering evaluation steers: the model, its SAE and the rank-1 `after` LoRA adapter
(`SteeringContext`, `load_context`), and the defaults that find them (the store's default SAE, its
default adapter among the rank-1 `after` ones: `steering_filter`; the built-in world's seed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasae.core.runtime import parse_device, seed_everything, setup_environment
from lorasae.evals.capabilities import consumer
from lorasae.model.load import check_layer, d_model, model_shape
from lorasae.sae.sources import check_sae_fits
from lorasae.steering.args import SteeringArgs
from lorasae.steering.concept import ConceptChoice
from lorasae.steering.intervention import check_mode, unit_direction
from lorasae.store import (
    AdapterFilter,
    SaeRef,
    adapter_line,
    chosen_sae,
    load_bundle,
    preflight_saes,
    resolve_adapter,
)
from lorasae.world import world_seed

KINDS: tuple[str, ...] = ("base", "lora")
MODEL_LABEL = {"base": "base", "lora": "LoRA"}


# --- model, SAE, adapter --------------------------------------------------------------------------


def steering_filter(ref: SaeRef, n_layers: int) -> AdapterFilter:
    """What steering asks of the default adapter (SPEC §steering: the base model vs the model with a
    rank-1 `after` adapter): rank 1 on layers L+1 … n−1; the store's one rule picks among the matches."""
    assert ref.layer is not None
    return AdapterFilter(rank=1, lora_span=f"{ref.layer + 1}-{n_layers - 1}")


def default_adapter(model_name: str, ref: SaeRef, n_layers: int, adapter: str | None = None) -> Path:
    """`adapter` when given, else the store's default adapter (`store.DEFAULT_ADAPTER_RULE`) filtered by
    `steering_filter` (the paper's steering comparison)."""
    try:
        return resolve_adapter(model_name, ref, adapter, steering_filter(ref, n_layers))
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}\nThe steering eval compares the base model with a rank-1 adapter on the layers after "
            f"the SAE: `python train_lora.py --model_type {model_name} --sae_layer {ref.layer} --rank 1 "
            "--LoRA_layers after --save_model`, or pass --adapter."
        ) from None


@dataclass
class SteeringContext:
    """Everything the evaluation steers: the model (a PeftModel when an adapter is loaded), its tokenizer,
    the SAE whose decoder row gives the direction, the layer, and the latent."""

    model: nn.Module
    tokenizer: Any
    sae: Any
    layer: int
    model_name: str = "model"
    sae_source: str = "sae"
    adapter: Path | None = None
    latent: int | None = None
    concept: ConceptChoice | None = None
    world_seed: int | None = None
    """Seed of the built-in world the model was trained on (from the model folder's world.json; 0, the
    built-in default, for other models): concept documents, mining corpus and offline negatives use it."""

    def __post_init__(self) -> None:
        if self.world_seed is None:
            self.world_seed = world_seed(self.model)
        check_layer(self.model, self.layer)
        check_sae_fits(self.sae, d_model(self.model), f"The SAE {self.sae_source}")

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS if self.adapter is not None else ("base",)

    @property
    def num_latents(self) -> int:
        return int(self.sae.W_dec.shape[0])

    @contextmanager
    def variant(self, kind: str) -> Iterator[None]:
        """`base`: adapters disabled; `lora`: adapters active."""
        if kind not in self.kinds:
            raise ValueError(f"model variant {kind!r} is not available (have {self.kinds})")
        if kind == "base" and self.adapter is not None:
            with self.model.disable_adapter():
                yield
        else:
            yield

    def direction(self) -> torch.Tensor:
        if self.latent is None:
            raise ValueError("no latent chosen yet")
        return unit_direction(self.sae.W_dec, self.latent)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "sae": self.sae_source,
            "layer": self.layer,
            "latent": self.latent,
            "adapter": str(self.adapter) if self.adapter is not None else None,
        }


def load_context(args: SteeringArgs, with_adapter: bool = True) -> SteeringContext:
    """Load the model, tokenizer, SAE (and the adapter) named by `args`, through the store."""
    setup_environment(wandb=args.wandb)
    seed_everything(args.seed)
    check_mode(args.mode)
    shape = model_shape(args.model_name)
    ref = chosen_sae(args)
    if ref.layer is not None:
        check_layer(shape, ref.layer)
    preflight_saes([ref.source], shape.d_model)  # width and finite weights before the adapter is sought
    adapter = default_adapter(args.model_name, ref, shape.n_layers, args.adapter) if with_adapter else None
    print(adapter_line(adapter, "steering"))
    bundle = load_bundle(
        args.model_name,
        [ref],
        adapter,
        device=parse_device(args.device),
        dtype=args.dtype,
        suite=consumer("steering"),
    )
    layer = bundle.layer
    print(
        f"model {args.model_name} | SAE {ref.source} (layer {layer}, {int(bundle.sae.W_dec.shape[0])} latents)"
        + (f" | adapter {adapter}" if adapter else "")
    )
    return SteeringContext(
        bundle.model, bundle.tokenizer, bundle.sae, layer, args.model_name, ref.source, adapter
    )


__all__ = [
    "SteeringContext",
    "default_adapter",
    "steering_filter",
    "load_context",
]
