"""The run records of what train_sae.py writes (issue 25): every SAE folder (the final SAE and each
checkpoint, every architecture) gets `run.json` (`lorasae/core/records.py`), written after the folder's other
files, naming the model and its weights digest, the data, the layer(s), the architecture, every setting
and its parents (a checkpoint's run: the final SAE's folder; --init_sae's SAE and --modification_file,
with their digests). The curve files get a record each, naming the SAE run they belong to.

Identity is read from these records (an identical rerun is skipped, the store finds SAEs by them, a
spliced SAE is checked against the model); `cfg.json`'s `metadata.lorasae` stays for sae_lens."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from lorasae.core.fingerprint import file_digest, weights_digest
from lorasae.core.paths import from_portable, portable
from lorasae.core.records import (
    CURVE_RECORD_KIND,
    SAE_RECORD_KIND,
    RunRecord,
    digest,
    model_weights_digest,
    read_record,
    write_record,
)
from lorasae.model.load import MODEL_REGISTRY, model_key
from lorasae.train.config import TrainSaeConfig
from lorasae.train.result import TrainResult
from lorasae.train.state import checkpoint_dir, resume_settings, state_path

PATH_FIELDS = {"final_dir", "checkpoint_dirs", "state_path", "curve_files"}
"""TrainResult fields that are paths: recomputed from the config, not recorded."""
_RESULT_FIELDS = {f.name for f in fields(TrainResult) if f.name not in PATH_FIELDS}


def model_source(name: str) -> tuple[str, str | None]:
    """(what names the model, the digest of its weights): a local folder by its portable path and the
    digest of its weight files; the built-in tiny model by `tiny` and its folder's digest (without
    building it); a hub model by its id (no local digest)."""
    target = MODEL_REGISTRY.get(name, name)
    if target.startswith("builtin:tiny"):
        from lorasae.world.tiny_model import default_root

        return name, model_weights_digest(default_root() / target.removeprefix("builtin:"))
    folder = Path(target).expanduser()
    if folder.is_dir():
        return portable(folder), model_weights_digest(folder)
    return target, None


def sae_run_identity(cfg: TrainSaeConfig) -> dict[str, Any]:
    """Everything that decides the SAE's numbers (a resolved config): the model(s) and weights digests,
    the data, layer(s), architecture, kind, every resume setting, the digests of --init_sae's SAE and
    of --modification_file, and --final_val_tokens when given (the final statistics' tokens)."""
    names = cfg.models or [cfg.model_name]
    sources = [model_source(name) for name in names]
    init = (
        {"source": portable(cfg.init_sae), "weights": weights_digest(cfg.init_sae)} if cfg.init_sae else None
    )
    modification = None
    if cfg.modification_file:
        found = from_portable(cfg.modification_file)
        modification = {
            "file": cfg.modification_file,
            "digest": file_digest(found) if found.is_file() else None,
        }
    final = {"final_val_tokens": cfg.final_val_tokens} if cfg.final_val_tokens is not None else {}
    return final | {
        "model": model_key(cfg.model_name),
        "model_source": sources[0][0],
        "model_weights": sources[0][1],
        "models": [{"source": s, "weights": d} for s, d in sources] if cfg.models else [],
        "data": portable(cfg.dataset) if cfg.dataset and Path(cfg.dataset).exists() else cfg.dataset,
        "layer": cfg.layer,
        "layers": list(cfg.layers),
        "architecture": cfg.architecture,
        "kind": cfg.kind,
        "settings": resume_settings(cfg),
        "init_sae": init,
        "modification": modification,
    }


def checkpoint_identity(run: dict[str, Any], pct: int | None) -> dict[str, Any]:
    """A folder's identity: the run's, plus which checkpoint (None: the final SAE)."""
    return {**run, "checkpoint_pct": pct}


def write_sae_record(
    folder: Path,
    run: dict[str, Any],
    pct: int | None,
    final: Path,
    extra: dict[str, Any],
) -> Path:
    """Write `folder/run.json` (last, after the weights, cfg.json and config.json)."""
    parents: list[str | Path] = [] if pct is None else [portable(final)]
    if run.get("init_sae"):
        parents.append(run["init_sae"]["source"])
    if run.get("modification"):
        parents.append(run["modification"]["file"])
    return write_record(folder, SAE_RECORD_KIND, checkpoint_identity(run, pct), parents, extra)


def write_curve_record(curve: Path, run: dict[str, Any], final: Path, points: int) -> Path:
    """Record of a curve file: the SAE run it belongs to (its identity digest) and, for readers, the SAE's
    folder, tag, layer(s) and kind, and whether it is the model's default SAE (the original's name)."""
    identity = {"sae_run": digest(checkpoint_identity(run, None)), "quantity": curve.parent.parent.name}
    extra = {
        "points": points,
        "sae": portable(final),
        "tag": final.parent.name,
        "layer": run["layer"],
        "layers": run["layers"],
        "kind": run["kind"],
        "default": curve.name == f"{run['kind']}_SAE.json",
    }
    return write_record(curve, CURVE_RECORD_KIND, identity, [portable(final)], extra)


def finished_run(cfg: TrainSaeConfig, final: Path) -> RunRecord | None:
    """The final SAE's record when it is this very run (same identity), else None."""
    record = read_record(final)
    if record is None or record.kind != SAE_RECORD_KIND:
        return None
    wanted = digest(checkpoint_identity(sae_run_identity(cfg), None))
    if record.identity_digest != wanted or not _RESULT_FIELDS <= set(record.extra.get("result") or {}):
        return None
    return record


def recorded_result(record: RunRecord, cfg: TrainSaeConfig) -> TrainResult:
    """The `TrainResult` a finished run recorded (what an identical rerun returns without training)."""
    numbers = {k: v for k, v in (record.extra.get("result") or {}).items() if k in _RESULT_FIELDS}
    return TrainResult(
        **numbers,
        final_dir=checkpoint_dir(cfg),
        checkpoint_dirs={pct: checkpoint_dir(cfg, pct) for pct in cfg.checkpoint_steps()},
        state_path=state_path(cfg),
        curve_files={q: from_portable(p) for q, p in (record.extra.get("curves") or {}).items()},
    )
