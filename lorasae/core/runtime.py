"""Process-level setup shared by every script: device and dtype parsing, seeding, `.env`, wandb."""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import numpy as np
import torch

from lorasae.core.errors import LorasaeError

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float64": torch.float64,
    "fp64": torch.float64,
    "double": torch.float64,
}


def parse_device(spec: str | int | torch.device | None = None) -> torch.device:
    """`None`/`"auto"` → first GPU if any, else CPU; `0`/`"0"` → `cuda:0`; `"cuda:1"`, `"cpu"`, `"mps"` as is."""
    if isinstance(spec, torch.device):
        return spec
    if spec is None or str(spec).strip().lower() in ("", "auto"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    text = str(spec).strip().lower()
    if text.isdigit():
        text = f"cuda:{text}"
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise ValueError(f"Unknown device {spec!r}: use 'cpu', a GPU index like 0, or 'cuda:0'.") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"Device {spec!r} asks for a GPU but CUDA is not available here: use --device cpu."
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"GPU {index} does not exist: this machine has {torch.cuda.device_count()} GPU(s)."
            )
    return device


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """Map `"float32"`, `"fp32"`, `"bf16"`, `"bfloat16"`, `"fp16"`... to a torch dtype."""
    if isinstance(name, torch.dtype):
        return name
    try:
        return _DTYPES[str(name).lower().removeprefix("torch.")]
    except KeyError as err:
        raise ValueError(f"Unknown dtype {name!r}: choose one of {sorted(_DTYPES)}.") from err


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.float32` -> `"float32"` (the spelling sae_lens writes in cfg.json)."""
    return str(dtype).removeprefix("torch.")


class CountError(LorasaeError, argparse.ArgumentTypeError, ValueError):
    """A count flag that is not a positive integer; an `ArgumentTypeError`, so argparse prints this
    message (the reason) instead of "invalid parse_count value"."""


def parse_count(value: str | int | float) -> int:
    """Parse a positive count written as `2_000_000_000`, `2e9`, `15000` or `15k`/`2M`/`2B`."""
    if isinstance(value, bool):
        raise CountError(f"expected a positive integer count, got {value!r}.")
    text = str(value).strip().replace("_", "").replace(",", "")
    scale = 1
    suffixes = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}
    if text and text[-1].lower() in suffixes:
        scale, text = suffixes[text[-1].lower()], text[:-1]
    try:
        number = float(text) * scale
    except ValueError as err:
        raise CountError(f"expected a positive integer count like 1_000_000, got {value!r}.") from err
    if number <= 0 or number != int(number):
        raise CountError(
            f"expected a positive integer count (at least 1: a run of zero tokens or examples trains "
            f"nothing and measures nothing), got {value!r}."
        )
    return int(number)


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_environment(wandb: bool = False, dotenv_path: str | Path | None = None) -> None:
    """Load `.env` (hub tokens, LLM API keys) and keep wandb off unless asked for."""
    try:
        from dotenv import load_dotenv

        load_dotenv(dotenv_path or Path.cwd() / ".env", override=False)
    except ImportError:  # python-dotenv is a dependency, but keep the scripts usable without it
        pass
    if not wandb:
        os.environ["WANDB_MODE"] = "disabled"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
