"""Precision and kernel choices per device: what `--dtype auto` (the default) means.

The original runs everything in float32. On a GPU that leaves most of the speed unused, so `auto` picks:

- the language model in bfloat16 on CUDA (float32 on the CPU, where bf16 GEMMs are not faster on every
  CPU and the tests compare against float32 references);
- TF32 matmuls for whatever stays float32 on CUDA (the SAE's parameters, LoRA's adapters);
- the SAE's forward in bf16 autocast while its parameters, gradients and optimiser state stay float32
  (`sae_autocast`); the KL of `train_lora.py` is computed in float32 in any case (`lorasae/lora/kl*.py`);
- the fastest attention that is exact for the architecture (`attention_implementation`): Gemma-2's
  attention-logit soft-capping is not supported by SDPA, so Gemma-2 gets FlashAttention-2 when
  `flash_attn` is installed (it implements the soft-cap), else eager attention; every other architecture
  gets transformers' default (SDPA);
- 8-bit Adam from bitsandbytes when installed (`lorasae/train/optim.py`, `--optimizer auto`).

`--dtype float32` reproduces the original's numerics: float32 model, no autocast, no TF32.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

import torch

from lorasae.core.runtime import parse_device, parse_dtype

AUTO = "auto"

# architectures whose attention applies a soft-cap to the logits (SDPA would silently drop it)
SOFTCAP_ATTENTION_MODELS = ("gemma2",)


def is_auto(dtype: str | torch.dtype | None) -> bool:
    return dtype is None or (isinstance(dtype, str) and dtype.strip().lower() == AUTO)


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device | None = None) -> torch.dtype:
    """The language model's dtype: `auto` → bfloat16 on a CUDA device that supports it, else float32;
    anything else as `parse_dtype` reads it."""
    if not is_auto(dtype):
        return parse_dtype(dtype)  # type: ignore[arg-type]
    device = parse_device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def attention_implementation(model_type: str, device: str | torch.device | None = None) -> str | None:
    """transformers' `attn_implementation` for this architecture on this device (None: its default,
    SDPA). Soft-capped attention (Gemma-2) must stay exact: FlashAttention-2 on CUDA when installed,
    otherwise eager."""
    if model_type in SOFTCAP_ATTENTION_MODELS:
        if parse_device(device).type == "cuda" and flash_attn_available():
            return "flash_attention_2"
        return "eager"
    return None


def configure_matmul(device: str | torch.device | None, dtype: str | torch.dtype | None) -> bool:
    """Allow TF32 matmuls and convolutions on CUDA under `--dtype auto` (an explicit float32 keeps full
    float32 GEMMs, as the original). Returns whether TF32 is on."""
    on = parse_device(device).type == "cuda" and is_auto(dtype)
    if on:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return on


def use_sae_autocast(device: torch.device, model_dtype: torch.dtype) -> bool:
    """The SAE runs under bf16 autocast when the model is bf16 on CUDA (its parameters stay float32)."""
    return device.type == "cuda" and model_dtype == torch.bfloat16


@contextlib.contextmanager
def sae_autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """bf16 autocast on `device` when `enabled` (`use_sae_autocast` decides on CUDA; the CPU tests switch
    it on to run the CUDA path's numerics under CPU autocast)."""
    if not enabled:
        yield
        return
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield
