"""SAEBench's output JSON schema (`sae_bench.evals.base_eval_output.BaseEvalOutput`), written natively.

Every eval writes one object with the fields SAEBench's `BaseEvalOutput` dataclasses serialise to:
`eval_type_id`, `eval_config`, `eval_id`, `datetime_epoch_millis`, `eval_result_metrics` (metric
categories → metric name → value), `eval_result_details` (list of per-item dicts), `eval_result_unstructured`,
`sae_bench_commit_hash`, `sae_lens_id`, `sae_lens_release_id`, `sae_lens_version`, `sae_cfg_dict`.
Undefined values (NaN, ±inf) are written as null, so the files are strict JSON (SAEBench's metric fields
are `float | None`; its core eval wrote -1 for NaN instead).
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import time
import uuid
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from lorasae.core.atomic import atomic_write_json

# SAEBench's eval type ids (`EVAL_TYPE_ID_*` in each eval's eval_output.py)
EVAL_TYPE_CORE = "core"
EVAL_TYPE_SPARSE_PROBING = "sparse_probing"
EVAL_TYPE_SCR = "scr"
EVAL_TYPE_TPP = "tpp"
EVAL_TYPE_ABSORPTION = "absorption_first_letter"
EVAL_TYPE_AUTOINTERP = "autointerp"
EVAL_TYPE_RAVEL = "ravel"
EVAL_TYPE_UNLEARNING = "unlearning"

REQUIRED_KEYS = (
    "eval_type_id",
    "eval_config",
    "eval_id",
    "datetime_epoch_millis",
    "eval_result_metrics",
    "eval_result_details",
    "eval_result_unstructured",
    "sae_bench_commit_hash",
    "sae_lens_id",
    "sae_lens_release_id",
    "sae_lens_version",
    "sae_cfg_dict",
)


def to_jsonable(obj: Any) -> Any:
    """Recursively convert tensors, numpy scalars, dtypes, paths and dataclasses into JSON values;
    NaN and ±inf become None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist() if obj.ndim else obj.item())
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return to_jsonable(obj.item())
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy array
        return to_jsonable(obj.tolist())
    if isinstance(obj, (torch.dtype, torch.device, Path)):
        return str(obj)
    return str(obj)


def sae_cfg_dict(sae: Any) -> dict[str, Any]:
    """The SAE's config as a plain dict (SAEBench stores `asdict(sae.cfg)`)."""
    cfg = getattr(sae, "cfg", None)
    if cfg is None:
        return {}
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        raw = dataclasses.asdict(cfg)
    elif hasattr(cfg, "to_dict") and callable(cfg.to_dict):
        raw = cfg.to_dict()
    elif isinstance(cfg, Mapping):
        raw = dict(cfg)
    else:
        raw = {k: v for k, v in vars(cfg).items() if not k.startswith("_")}
    return to_jsonable(raw)


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def lorasae_commit_hash() -> str:
    """The repository's short commit hash (this native implementation stands in for SAEBench's)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return f"lorasae-{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        return "lorasae-unknown"


def eval_output(
    eval_type_id: str,
    eval_config: Any,
    metrics: Mapping[str, Mapping[str, Any]],
    details: list[Mapping[str, Any]] | None,
    sae: Any,
    sae_id: str,
    release_id: str | None = None,
    unstructured: Any = None,
) -> dict[str, Any]:
    """Assemble one eval's output object in SAEBench's schema."""
    return to_jsonable(
        {
            "eval_type_id": eval_type_id,
            "eval_config": eval_config,
            "eval_id": str(uuid.uuid4()),
            "datetime_epoch_millis": int(time.time() * 1000),
            "eval_result_metrics": metrics,
            "eval_result_details": list(details or []),
            "eval_result_unstructured": unstructured,
            "sae_bench_commit_hash": lorasae_commit_hash(),
            "sae_lens_id": sae_id,
            "sae_lens_release_id": release_id,
            "sae_lens_version": _package_version("sae-lens"),
            "sae_cfg_dict": sae_cfg_dict(sae),
        }
    )


def validate_eval_output(obj: Mapping[str, Any]) -> None:
    """Raise `ValueError` if `obj` lacks a field of SAEBench's schema or has the wrong shape."""
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise ValueError(f"eval output is missing SAEBench fields: {missing}")
    metrics = obj["eval_result_metrics"]
    if not isinstance(metrics, Mapping) or not all(isinstance(v, Mapping) for v in metrics.values()):
        raise ValueError("eval_result_metrics must map metric categories to dicts of metrics")
    if not isinstance(obj["eval_result_details"], list):
        raise ValueError("eval_result_details must be a list")
    if not isinstance(obj["eval_config"], Mapping):
        raise ValueError("eval_config must be a dict")


def write_eval_output(path: str | Path, obj: Mapping[str, Any]) -> Path:
    """Validate and write atomically."""
    validate_eval_output(obj)
    return atomic_write_json(path, obj)
