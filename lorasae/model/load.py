"""Model registry and loading, and uniform access to the decoder layers of any causal LM
(Llama, Gemma-2, GPT-2, GPT-NeoX), seen through PEFT wrappers."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lorasae.core import grok_paths
from lorasae.core.errors import LorasaeError
from lorasae.core.file_checks import check_saved_folder
from lorasae.core.precision import attention_implementation, configure_matmul, resolve_dtype
from lorasae.core.runtime import parse_device

MODEL_REGISTRY: dict[str, str] = {
    "gemma": "google/gemma-2-2b",
    "gemma-2b": "google/gemma-2-2b",
    "gemma-9b": "google/gemma-2-9b",
    "llama": "meta-llama/Llama-3.2-1B",
    "tiny": "builtin:tiny",
    "tiny-s": "builtin:tiny-s",  # the built-in model at half width (lorasae/world/sizes.py)
    "grok": "builtin:grok",  # lorasae/grok: modular addition at p = 97, trained until it groks
    "esm": "facebook/esm2_t6_8M_UR50D",  # ESM2 protein masked LM (the seed's second model type)
}

MASKED_LM_TYPES = ("esm",)
"""transformers `model_type`s loaded as masked LMs (`AutoModelForMaskedLM`); their spliced metric is the
masked-LM loss (`lorasae.model.ce`), not next-token CE."""


def is_masked_lm(model: nn.Module) -> bool:
    """Whether `model` is one of the masked LMs of `MASKED_LM_TYPES` (ESM2)."""
    return getattr(getattr(unwrap(model), "config", None), "model_type", None) in MASKED_LM_TYPES


class UnknownModelError(LorasaeError, ValueError):
    pass


class LayerOutOfRangeError(LorasaeError, ValueError):
    pass


def resolve_model_name(name: str) -> str:
    """Registry key → hub id; `tiny` → the built-in model's folder (built on first use); local paths and
    hub ids (`org/name`) pass through. Anything else raises `UnknownModelError`."""
    key = name.strip()
    if key in MODEL_REGISTRY:
        target = MODEL_REGISTRY[key]
        if target.startswith("builtin:tiny"):
            from lorasae.world.tiny_model import ensure_tiny_model

            return str(ensure_tiny_model(size=target.removeprefix("builtin:")))
        if target == "builtin:grok":
            from lorasae.grok_world.train import ensure_grok_model

            return str(ensure_grok_model())
        return target
    if Path(key).expanduser().exists():
        return str(Path(key).expanduser())
    parts = key.split("/")
    if len(parts) == 2 and all(parts):
        return key
    raise UnknownModelError(
        f"Unknown model {name!r}: use one of {sorted(MODEL_REGISTRY)}, a Hugging Face id like "
        "'google/gemma-2-2b', or a local folder saved with save_pretrained."
    )


MODEL_FIX = "re-save or re-download the model (a folder saved with save_pretrained)"


def _unreachable(name: str, path: str, err: OSError, what: str) -> UnknownModelError:
    return UnknownModelError(
        f"Could not {what} {name!r} ({path}): {err}\n"
        "Check the name, set HF_TOKEN (in the environment or .env) for gated models such as Gemma "
        "and Llama, and check network access; offline, use --model_type tiny."
    )


def model_key(name: str) -> str:
    """The short name used in output paths: registry keys as is, `org/name` → `name`, folders → basename."""
    key = name.strip().rstrip("/")
    if key in MODEL_REGISTRY:
        return "gemma" if key == "gemma-2b" else key
    if grok := grok_paths.grok_model_key(
        key
    ):  # a grokking run's checkpoint: `step_300` alone says too little
        return grok
    return key.split("/")[-1]


def load_model(
    name: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = torch.float32,
    attn_implementation: str | None = None,
):
    """Load `(model, tokenizer)` through the Auto classes, in eval mode, on `device`. `dtype="auto"` and
    the attention implementation are resolved per device by `lorasae.core.precision`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    path = resolve_model_name(name)
    device = parse_device(device)
    configure_matmul(device, dtype)
    dtype = resolve_dtype(dtype, device)
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    check_saved_folder(path, MODEL_FIX)
    try:
        config = AutoConfig.from_pretrained(path, token=token)
        if attn_implementation is None:  # Gemma-2's soft-capping needs eager or FlashAttention-2
            attn_implementation = attention_implementation(getattr(config, "model_type", ""), device)
        auto = AutoModelForMaskedLM if config.model_type in MASKED_LM_TYPES else AutoModelForCausalLM
        model = auto.from_pretrained(path, dtype=dtype, token=token, attn_implementation=attn_implementation)
        tokenizer = AutoTokenizer.from_pretrained(path, token=token)
        if tokenizer.bos_token is None and getattr(tokenizer, "cls_token", None):  # ESM: chunks start <cls>
            tokenizer.bos_token = tokenizer.cls_token
    except OSError as err:
        raise _unreachable(name, path, err, "load model") from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying transformers model of a PeftModel (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


_LAYER_PATHS = (
    "model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "esm.encoder.layer",
    "layers",
    "h",
)


def find_module(model: nn.Module, candidates: Sequence[str], kind: type = nn.Module) -> nn.Module | None:
    """The first of the dotted attribute paths `candidates` (under the unwrapped model) that holds a `kind`."""
    base = unwrap(model)
    for path in candidates:
        module: object = base
        for attr in path.split("."):
            module = getattr(module, attr, None)
            if module is None:
                break
        if isinstance(module, kind):
            return module
    return None


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    found = find_module(model, _LAYER_PATHS, nn.ModuleList)
    if isinstance(found, nn.ModuleList):
        return found
    base = unwrap(model)
    raise TypeError(
        f"Cannot find the decoder layers of {type(base).__name__}: tried {', '.join(_LAYER_PATHS)}."
    )


def layer_module_name(model: nn.Module, layer: int) -> str:
    """Fully qualified name of decoder layer `layer` within `unwrap(model)`, e.g. `model.layers.12`."""
    target = decoder_layers(model)[layer]
    for name, module in unwrap(model).named_modules():
        if module is target:
            return name
    raise LookupError(f"layer {layer} not found by name")


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def _text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _config_d_model(config) -> int:
    text_config = _text_config(config)
    for attr in ("hidden_size", "n_embd", "d_model"):
        value = getattr(text_config, attr, None)
        if value:
            return int(value)
    raise TypeError(f"Cannot find the residual width of {type(config).__name__}.")


def _config_max_positions(config) -> int | None:
    text_config = _text_config(config)
    value = getattr(text_config, "max_position_embeddings", None) or getattr(text_config, "n_positions", None)
    return int(value) if value else None


def d_model(model: nn.Module) -> int:
    return _config_d_model(unwrap(model).config)


def max_positions(model: nn.Module) -> int | None:
    """The model's context window (None when its config does not say)."""
    return _config_max_positions(unwrap(model).config)


@dataclass(frozen=True)
class ModelShape:
    """What the defaults and the checks need to know of a model, read from its config alone."""

    d_model: int
    n_layers: int
    max_positions: int | None

    @classmethod
    def of(cls, model: nn.Module) -> ModelShape:
        return cls(d_model(model), num_layers(model), max_positions(model))


def model_shape(name: str) -> ModelShape:
    """The shape of a model from its config (no weights are loaded): for choosing defaults, checking
    layers and naming outputs before anything heavy happens."""
    return _shape_at(resolve_model_name(name), name)


@functools.lru_cache(maxsize=64)
def _shape_at(path: str, name: str) -> ModelShape:
    from transformers import AutoConfig

    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    check_saved_folder(path, MODEL_FIX)
    try:
        config = AutoConfig.from_pretrained(path, token=token)
    except OSError as err:
        raise _unreachable(name, path, err, "read the config of model") from err
    text_config = _text_config(config)
    n_layers = getattr(text_config, "num_hidden_layers", None) or getattr(text_config, "n_layer", None)
    if not n_layers:
        raise TypeError(f"Cannot find the number of layers of {type(config).__name__}.")
    return ModelShape(_config_d_model(config), int(n_layers), _config_max_positions(config))


def check_layer(model: nn.Module | ModelShape | int, layer: int) -> int:
    """`layer` if the model (a loaded model, its shape, or its layer count) has it, else
    `LayerOutOfRangeError` saying the valid range."""
    if isinstance(model, int):
        n = model
    elif isinstance(model, ModelShape):
        n = model.n_layers
    else:
        n = num_layers(model)
    if not 0 <= layer < n:
        raise LayerOutOfRangeError(
            f"Layer {layer} is out of range: this model has {n} decoder layers (0 … {n - 1})."
        )
    return layer


def special_token_ids(tokenizer) -> list[int]:
    """BOS/EOS/PAD ids: the positions Gemma Scope SAEs leave unspliced."""
    ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    return sorted(i for i in ids if i is not None)
