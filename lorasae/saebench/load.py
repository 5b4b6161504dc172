"""Loading what is evaluated: the base or LoRA-merged model and the SAE (`load_for_eval`), the defaults
that find them, and the SAE's and the model's identity (`sae_identifier`, `world_seed`).

Also `get_peft_dict.py`'s logic: merge a saved adapter into the base weights and save the full state dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasae.atomic import atomic_save_file
from lorasae.defaults import adapter_for_sae, default_sae_source, world_seed
from lorasae.models import d_model, load_model, model_key
from lorasae.runtime import parse_device
from lorasae.sae.sources import sae_hook_layer
from lorasae.saebench.args import MODEL_TYPES, SaeBenchArgs, peft_dict_path

# --- model, SAE, adapter --------------------------------------------------------------------------


def default_adapter(model_name: str, sae_source: str) -> Path:
    """The newest adapter saved for this SAE (`find_adapter`); for a final SAE, one trained on its 100%
    checkpoint also counts (the weights are the same)."""
    try:
        return adapter_for_sae(model_name, sae_source)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}\n`run_eval.py --model_type peft` evaluates the SAE on the model with its LoRA adapter "
            f"merged in: train one with `python train_lora.py --model_type {model_name} --sae_layer <L> "
            "--rank <r> --save_model`, or pass --adapter."
        ) from None


def merged_model(model: nn.Module, adapter: Path, peft_dict: Path | None) -> tuple[nn.Module, str]:
    """The model with the adapter merged in: from a saved merged state dict when given, else merged now."""
    if peft_dict is not None:
        state = torch.load(peft_dict, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied embeddings
        if missing or unexpected:
            raise ValueError(
                f"{peft_dict} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                "regenerate it with get_peft_dict.py."
            )
        return model.eval(), f"merged state dict {peft_dict}"
    from lorasae.lora.adapters import merge_adapter

    return merge_adapter(model, adapter).eval(), f"adapter {adapter} (merged in memory)"


def save_peft_dict(model_name: str, adapter: str | Path | None, output: str | Path | None, device: Any = "cpu",
                   dtype: str = "float32") -> Path:  # fmt: skip
    """`get_peft_dict.py`: merge the adapter into the base weights and save the full state dict."""
    from lorasae.lora.adapters import find_adapter, merge_adapter

    adapter = Path(adapter) if adapter else find_adapter(model_key(model_name))
    out = Path(output) if output else peft_dict_path(model_name, adapter)
    model, _ = load_model(model_name, parse_device(device), dtype)
    merged = merge_adapter(model, adapter)
    state = {k: v.detach().cpu() for k, v in merged.state_dict().items()}
    atomic_save_file(out, lambda tmp: torch.save(state, tmp))
    print(f"Merged {adapter} into {model_name}: {len(state)} tensors saved to {out}")
    return out


@dataclass
class Loaded:
    model: nn.Module
    tokenizer: Any
    sae: Any
    layer: int
    sae_source: str
    description: str


def load_for_eval(args: SaeBenchArgs) -> Loaded:
    """Load the model (merged for peft), its tokenizer and the SAE named by `args`."""
    from lorasae.sae import load_sae

    if args.model_type not in MODEL_TYPES:
        raise ValueError(
            f"--model_type must be one of {MODEL_TYPES} (the model to evaluate on), got {args.model_type!r}"
        )
    device = parse_device(args.device)
    model, tokenizer = load_model(args.model_name, device, args.dtype)
    source = args.sae or default_sae_source(args.model_name)
    sae = load_sae(source, device=device, dtype=torch.float32)
    layer = args.layer if args.layer is not None else sae_hook_layer(sae)
    if layer is None:
        raise ValueError(f"The SAE {source} does not say which layer it reads: pass --layer.")
    if int(sae.W_dec.shape[1]) != d_model(model):
        raise ValueError(
            f"The SAE reads {int(sae.W_dec.shape[1])}-dimensional activations but {args.model_name} has "
            f"d_model {d_model(model)}: it was trained for another model."
        )
    description = "base model"
    if args.model_type == "peft":
        adapter = Path(args.adapter) if args.adapter else default_adapter(args.model_name, source)
        peft_dict = Path(args.peft_dict) if args.peft_dict else None
        if peft_dict is None:
            candidate = peft_dict_path(args.model_name, adapter)
            weights = [p for p in adapter.glob("adapter_model.*")]
            if candidate.exists() and all(candidate.stat().st_mtime >= w.stat().st_mtime for w in weights):
                peft_dict = candidate
        model, description = merged_model(model, adapter, peft_dict)
    model.requires_grad_(False)
    return Loaded(model, tokenizer, sae, layer, source, description)


def model_world_seed(model_name: str) -> int:
    """The built-in world's seed (from the model folder's world.json; 0 when absent)."""
    from lorasae.models import resolve_model_name

    if model_name != "tiny" and not Path(model_name).exists():
        return 0
    return world_seed(resolve_model_name(model_name))


def sae_identifier(source: str) -> tuple[str, str | None]:
    """(sae_lens_id, sae_lens_release_id): a sae-lens `release/sae_id` splits in two; a folder is its own id."""
    if Path(source).exists() or "/" not in source:
        return source, None
    release, sae_id = source.split("/", 1)
    return sae_id, release
