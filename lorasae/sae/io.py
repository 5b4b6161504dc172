"""SAELens's on-disk format for our TopK SAEs: ``cfg.json`` + ``sae_weights.safetensors`` (the files and
the config dict; ``TopKSAE.save`` / ``TopKSAE.load`` in ``topk.py`` put a model in and take it out).

The layout is what ``sae_lens.SAE.load_from_disk`` (sae-lens >= 6) reads for architecture ``topk``:
weights ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in], ``b_dec`` [d_in]; the config
holds the SAEConfig fields at the top level and provenance under ``metadata`` (sae_lens keeps unknown
metadata keys). Our own extras (training step, tokens, checkpoint percentage, ...) go in
``metadata["lorasae"]``. Folders are written atomically (temp sibling folder, then rename).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lorasae.core.atomic import atomic_dir
from lorasae.core.errors import LorasaeError
from lorasae.sae.config import SaeConfig, dtype_name, layer_from_hook_name

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")


class SaeFormatError(LorasaeError, ValueError):
    """An SAE folder is missing a file, or a file is corrupt, truncated or of the wrong shape."""


def _sae_lens_version() -> str:
    """Version stamped into cfg.json (sae_lens reads configs without one, or < 6, as the old format)."""
    try:
        return importlib_metadata.version("sae-lens")
    except importlib_metadata.PackageNotFoundError:
        return "6.0.0"


def sae_lens_cfg(
    cfg: SaeConfig, dtype: torch.dtype, extra: Mapping[str, Any] | None = None, architecture: str = "topk"
) -> dict[str, Any]:
    """The cfg.json dict of an SAE with ``cfg`` and parameters in ``dtype`` (sae_lens TopKSAEConfig
    fields + metadata; ``architecture="standard"`` for the ReLU SAE, whose config has no ``k``)."""
    k = {"k": cfg.k} if architecture == "topk" else {}
    return {
        "architecture": architecture,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        **k,
        "dtype": dtype_name(dtype),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "rescale_acts_by_decoder_norm": False,
        "metadata": {
            "sae_lens_version": _sae_lens_version(),
            "sae_lens_training_version": None,
            "model_name": cfg.model_name,
            "hook_name": cfg.hook_name,
            "hook_layer": cfg.hook_layer,
            "hook_head_index": None,
            "prepend_bos": True,
            "exclude_special_tokens": cfg.skip_special_tokens,
            "lorasae": {"format": 1, **dict(extra or {})},
        },
    }


def write_sae_folder(folder: str | Path, cfg: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> Path:
    """Write ``cfg.json`` + ``sae_weights.safetensors`` (tensors in SAELens layout) to ``folder``, replacing
    it atomically; returns the folder."""
    folder = Path(folder)
    text = json.dumps(cfg, indent=2, default=str) + "\n"  # default=str: paths etc. in extras
    weights = {name: w.to("cpu").contiguous() for name, w in weights.items()}
    with atomic_dir(folder) as tmp:
        save_file(weights, str(tmp / WEIGHTS_FILENAME))
        with open(tmp / CFG_FILENAME, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    return folder


def read_cfg(folder: str | Path, filename: str = CFG_FILENAME) -> dict[str, Any]:
    """The JSON config of an SAE folder, with an error naming the file when it is missing or corrupt."""
    path = Path(folder) / filename
    if not path.is_file():
        raise SaeFormatError(f"{path} is missing: {Path(folder)} is not a complete SAE folder. {REDO_HINT}")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SaeFormatError(f"{path} is corrupt or truncated ({err}). {REDO_HINT}") from err
    if not isinstance(cfg, dict):
        raise SaeFormatError(f"{path} should hold a JSON object, not {type(cfg).__name__}. {REDO_HINT}")
    return cfg


def read_weights(
    folder: str | Path,
    filename: str = WEIGHTS_FILENAME,
    device: torch.device | str = "cpu",
    load: bool = True,
) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, with an error naming the file when it is missing, corrupt or
    truncated. ``load=False`` only validates the file (header and size) and returns an empty dict."""
    path = Path(folder) / filename
    if not path.is_file():
        raise SaeFormatError(f"{path} is missing: {Path(folder)} is not a complete SAE folder. {REDO_HINT}")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()} if load else {}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise SaeFormatError(f"{path} is corrupt or truncated ({err}). {REDO_HINT}") from err


# what every format error suggests
REDO_HINT = (
    "Regenerate it: rerun train_sae.py with the flags that made it and --overwrite (an SAE from elsewhere: "
    "re-save or re-download it)."
)


def config_from_sae_lens(cfg: Mapping[str, Any]) -> SaeConfig:
    """SaeConfig from a SAELens cfg.json dict (top-level fields, provenance from ``metadata``)."""
    meta = {**cfg, **(cfg.get("metadata") or {})}
    hook_name = meta.get("hook_name") or meta.get("hook_point")
    layer = meta.get("hook_layer")
    if layer is None and hook_name:
        layer = layer_from_hook_name(str(hook_name))
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    return SaeConfig(
        d_in=int(cfg["d_in"]),
        d_sae=int(cfg["d_sae"]),
        k=int(k),
        model_name=meta.get("model_name"),
        hook_layer=None if layer is None else int(layer),
        hook_name=hook_name,
        dtype=str(cfg.get("dtype") or "float32"),
        skip_special_tokens=bool(meta.get("exclude_special_tokens") or False),
    )


def is_plain_topk(cfg: Mapping[str, Any]) -> bool:
    """Whether a SAELens cfg describes exactly our model: topk, b_dec subtracted from the input,
    no activation normalisation, no decoder-norm rescaling, no hook_z reshaping."""
    arch = cfg.get("architecture")
    if arch is None and cfg.get("activation_fn") == "topk":  # pre-6 sae_lens configs
        arch = "topk"
    return (
        arch == "topk"
        and cfg.get("apply_b_dec_to_input", True) is True
        and cfg.get("normalize_activations") in (None, "none", False)
        and cfg.get("reshape_activations", "none") == "none"
        and not cfg.get("rescale_acts_by_decoder_norm", False)
        and not cfg.get("finetuning_scaling_factor", False)
    )
