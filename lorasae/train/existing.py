"""What train_sae.py does about an SAE already saved at its run's folder: skip an identical finished run
(its run record says so; `train_sae`), refuse to replace one trained with other settings (unless
--overwrite, or --resume to continue it), and check before anything loads that every folder it writes
is writable. What made a saved SAE is read from its run record (`run.json`, `lorasae/train/sae_record.py`);
for SAEs saved before records, from the fingerprint and settings in its cfg.json metadata
(`sae_provenance`, still written for sae_lens readers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasae.core.errors import OutputExistsError
from lorasae.core.fingerprint import differing, fingerprint
from lorasae.core.preflight import check_writable
from lorasae.core.records import digest, read_record
from lorasae.model.load import ModelShape
from lorasae.sae.io import read_cfg
from lorasae.train.config import TrainSaeConfig
from lorasae.train.sae_names import MEASUREMENT_SETTINGS
from lorasae.train.sae_record import sae_run_identity
from lorasae.train.state import checkpoint_dir, curve_path, resume_settings, state_path


def sae_provenance(cfg: TrainSaeConfig) -> dict[str, Any]:
    """The cfg.json metadata that says what made this SAE."""
    settings = resume_settings(cfg)
    return {"fingerprint": fingerprint(cfg.model_name, cfg.dataset, settings), "settings": settings}


def existing_outputs(cfg: TrainSaeConfig) -> list[Path]:
    """The run's SAE folders (final and checkpoints) and training state that exist now."""
    folders = [checkpoint_dir(cfg)] + [checkpoint_dir(cfg, pct) for pct in cfg.checkpoint_steps()]
    return [p for p in folders if p.exists()] + ([state_path(cfg)] if state_path(cfg).exists() else [])


def recorded_provenance(folder: Path) -> dict[str, Any]:
    """The fingerprint and settings an SAE folder's cfg.json records (`metadata.lorasae`); empty values
    for SAEs saved before fingerprints (or by other tools)."""
    try:
        meta = read_cfg(folder).get("metadata") or {}
    except (OSError, ValueError):
        return {"fingerprint": None, "settings": {}}
    ours = meta.get("lorasae") or {}
    return {"fingerprint": ours.get("fingerprint"), "settings": ours.get("settings") or {}}


_INPUTS = {"model_source": "model", "model_weights": "model weights", "data": "data", "init_sae": "--init_sae",
           "modification": "--modification_file", "models": "--models"}  # fmt: skip


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    """What differs between a recorded run identity and this run's (None: the same run)."""
    saved = {k: v for k, v in saved.items() if k != "checkpoint_pct"}
    if digest(saved) == digest(now):
        return None
    settings = differing(saved.get("settings") or {}, now["settings"])
    changed = [f"--{k}" for k in settings if k != "model"]
    changed += [
        label for key, label in _INPUTS.items() if saved.get(key) != now.get(key) and label not in changed
    ]
    return "trained with other settings or inputs (" + (", ".join(changed) or "see its run.json") + ")"


def _measurement_only(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The flags that differ between a recorded run identity and this run's when every one of them only
    changes what is measured, not the weights (`sae_names.MEASUREMENT_SETTINGS`: the folder name is then
    the same); empty otherwise."""
    top = [k for k in {*saved, *now} - {"settings", "checkpoint_pct"} if saved.get(k) != now.get(k)]
    changed = sorted({*differing(saved.get("settings") or {}, now["settings"]), *top})
    return [f"--{k}" for k in changed] if changed and set(changed) <= MEASUREMENT_SETTINGS else []


def _legacy_differences(folder: Path, cfg: TrainSaeConfig) -> str | None:
    """What differs according to an SAE folder's cfg.json metadata (None: the same fingerprint)."""
    recorded, now = recorded_provenance(folder), sae_provenance(cfg)
    if recorded.get("fingerprint") == now["fingerprint"]:
        return None
    saved = recorded.get("settings") or {}
    changed = differing({k: saved[k] for k in saved}, {k: now["settings"].get(k) for k in saved})
    if saved and changed:
        return "trained with other settings (" + ", ".join(f"--{k}" for k in changed if k != "model") + ")"
    return "of unknown provenance (no fingerprint recorded)"


def check_existing(cfg: TrainSaeConfig) -> str | None:
    """Raise `OutputExistsError` when the run would replace an SAE trained with other settings; returns
    a note to print when it replaces one (same settings but not finished, or --overwrite), else None.
    A finished identical run (`sae_record.finished_run`) is skipped before this is called."""
    found = existing_outputs(cfg)
    if not found or cfg.resume:
        return None
    final = checkpoint_dir(cfg)
    folders = [p for p in found if p.is_dir()]
    if cfg.overwrite:
        return f"--overwrite: replacing the SAE at {final} and its checkpoints."
    records = [read_record(folder) for folder in folders]
    record = next((r for r in records if r is not None and r.kind == "sae" and not r.inferred), None)
    if record is not None:
        now = sae_run_identity(cfg)
        why = _differences(record.identity, now)
        if only := _measurement_only(record.identity, now):
            raise OutputExistsError(
                f"{folders[0]} already holds an SAE whose weights this run would train again (only "
                f"{', '.join(only)} differ, which change what is measured, not the weights, so the folder is "
                "the same): pass --overwrite to redo it with these settings, or keep it."
            )
        if why is None:  # a checkpoint of this very run, and no final record: it stopped before the end
            return f"Training the SAE at {final} again: an earlier run with the same settings stopped before it finished."
    else:  # saved before run records: what cfg.json's metadata says
        why = (
            _legacy_differences(folders[0], cfg)
            if folders
            else "of unknown provenance (no fingerprint recorded)"
        )
        if why is None:
            return (
                f"Training the SAE at {final} again: it has no run record (an earlier run with the same "
                "settings stopped before it finished, or it predates run records)."
            )
    raise OutputExistsError(
        f"{folders[0] if folders else found[0]} already holds an SAE {why}; this run would replace it, its "
        "checkpoints and its curves. Pass --overwrite to replace it, --resume to continue its training, or "
        "change --layer/--expansion_factor/--k or a training setting (named in the folder) to write elsewhere."
    )


def check_outputs_writable(cfg: TrainSaeConfig, shape: ModelShape) -> None:
    """The SAE folders and the curve files can be written (checked before the model loads)."""
    check_writable(
        [checkpoint_dir(cfg).parent, curve_path(cfg, "val_loss", shape).parent,
         curve_path(cfg, "time", shape).parent],
        "SAE and its curves",
    )  # fmt: skip
