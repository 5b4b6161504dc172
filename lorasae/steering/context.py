"""What the steering evaluation steers: the model, its SAE and the rank-1 `after` LoRA adapter
(`SteeringContext`, `load_context`), and the defaults that find them (the newest SAE and adapter saved
for the model; the built-in world's seed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasae.defaults import adapter_for_sae, default_sae_source, world_seed
from lorasae.models import check_layer, d_model, load_model, num_layers, unwrap
from lorasae.runtime import parse_device, seed_everything, setup_environment
from lorasae.steering.args import SteeringArgs
from lorasae.steering.concept import ConceptChoice
from lorasae.steering.intervention import check_mode, unit_direction

KINDS: tuple[str, ...] = ("base", "lora")
MODEL_LABEL = {"base": "base", "lora": "LoRA"}


# --- model, SAE, adapter --------------------------------------------------------------------------


def default_adapter(model_name: str, sae_source: str, layer: int, n_layers: int) -> Path:
    """The newest rank-1 adapter on layers L+1 … n−1 (`--LoRA_layers after`) trained for this SAE (for a
    final SAE, one trained on its 100% checkpoint also counts: the weights are the same)."""
    try:
        return adapter_for_sae(model_name, sae_source, rank=1, lora_span=f"{layer + 1}-{n_layers - 1}")
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}\nThe steering eval compares the base model with a rank-1 adapter on the layers after "
            f"the SAE: `python train_lora.py --model_type {model_name} --sae_layer {layer} --rank 1 "
            "--LoRA_layers after --save_model`, or pass --adapter."
        ) from None


def model_world_seed(model: nn.Module) -> int:
    """The `seed` in `world.json` beside the model's weights (the built-in model records it), else 0."""
    return world_seed(str(getattr(unwrap(model), "name_or_path", "") or "") or None)


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
            self.world_seed = model_world_seed(self.model)
        check_layer(self.model, self.layer)
        width = int(self.sae.W_dec.shape[1])
        if width != d_model(self.model):
            raise ValueError(
                f"The SAE reads {width}-dimensional activations but the model's residual stream has "
                f"{d_model(self.model)} dimensions: it was trained for another model."
            )

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
    """Load the model, tokenizer, SAE (and the adapter) named by `args`."""
    from lorasae.sae.sources import load_sae, sae_hook_layer

    setup_environment(wandb=args.wandb)
    seed_everything(args.seed)
    check_mode(args.mode)
    device = parse_device(args.device)
    model, tokenizer = load_model(args.model_name, device, args.dtype)
    source = args.sae or default_sae_source(args.model_name)
    sae = load_sae(source, device=device, dtype=torch.float32, layer=args.layer)
    layer = args.layer if args.layer is not None else sae_hook_layer(sae)
    if layer is None:
        raise ValueError(f"The SAE {source} does not say which layer it reads: pass --layer.")
    adapter = None
    if with_adapter:
        adapter = (
            Path(args.adapter)
            if args.adapter
            else default_adapter(args.model_name, source, layer, num_layers(model))
        )
        from lorasae.lora.adapters import load_peft_model

        model = load_peft_model(model, adapter)
        model.eval()
    print(
        f"model {args.model_name} | SAE {source} (layer {layer}, {int(sae.W_dec.shape[0])} latents)"
        + (f" | adapter {adapter}" if adapter else "")
    )
    return SteeringContext(model, tokenizer, sae, layer, args.model_name, source, adapter)


__all__ = [
    "SteeringContext",
    "default_adapter",
    "load_context",
    "model_world_seed",
]
