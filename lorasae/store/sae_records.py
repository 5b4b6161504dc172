"""The run record of an SAE folder as the store reads it (issue 25): the record train_sae.py wrote
(`lorasae/train/sae_record.py`), or, for a legacy folder (saved before records) or an external one, a
record inferred from what its names and `cfg.json` say, marked inferred (written beside it when a
command that used it finishes successfully: `lorasae.core.records.defer_inferred_record`).
This is the only place where an SAE folder's name is parsed for what the SAE is; everything else reads
the record. `check_sae_model` refuses an SAE whose record names another model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasae.core.errors import LorasaeError
from lorasae.core.paths import SAE_KINDS
from lorasae.core.records import (
    SAE_RECORD_KIND,
    RunRecord,
    defer_inferred_record,
    model_weights_digest,
    read_record,
)
from lorasae.sae.io import read_cfg
from lorasae.store.tags import ARCH_TAG, layer_from_path


class SaeModelMismatchError(LorasaeError, ValueError):
    """An SAE's run record names another model than the one it is spliced into."""


def _cfg_architecture(cfg: dict[str, Any]) -> str | None:
    """Our architecture name when cfg.json says it (an `architecture` field; None without one: an older
    folder, read by its names as before)."""
    if "architecture" not in cfg:
        return None
    from lorasae.sae.registry import architecture_from_cfg

    return architecture_from_cfg(cfg)


def _cfg_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """The expansion factor and k that cfg.json's widths and k say (a crosscoder's d_in is a list)."""
    d_in, d_sae = cfg.get("d_in"), cfg.get("d_sae")
    details = (cfg.get("metadata") or {}).get("training_architecture_details") or {}
    k = cfg.get("k", details.get("k"))
    out: dict[str, Any] = {}
    if isinstance(d_in, int) and isinstance(d_sae, int) and d_in > 0 and d_sae % d_in == 0:
        out["expansion_factor"] = d_sae // d_in
    if isinstance(k, int):
        out["k"] = k
    return out


def inferred_identity(folder: Path) -> dict[str, Any]:
    """What a folder without a record says of its SAE: our layout's names
    (`saved_saes/<model>/<kind>/<tag>/model.layers.<L>`: model, kind, layer, checkpoint) and `cfg.json`'s
    recorded settings; the architecture, width and k from cfg.json where it names its architecture (the
    tag's only for older folders whose cfg.json does not)."""
    folder = Path(folder)
    tag = folder.parent.name
    arch = ARCH_TAG.match(tag)
    try:
        cfg = read_cfg(folder)
    except (OSError, ValueError):
        cfg = {}
    ours = (cfg.get("metadata") or {}).get("lorasae") or {}
    settings = dict(ours.get("settings") or {})
    architecture = _cfg_architecture(cfg)
    if architecture is not None:  # what the weights are, whatever the folder is called
        settings = {**_cfg_settings(cfg), **settings}
    elif arch:
        settings.setdefault("expansion_factor", int(arch["e"]))
        if arch["k"]:
            settings.setdefault("k", int(arch["k"]))
        architecture = "crosscoder" if tag.startswith("crosscoder_") else "relu" if arch["l1"] else "topk"
    kind = folder.parent.parent.name if len(folder.parents) > 2 else ""
    ours_layout = kind in SAE_KINDS and len(folder.parents) > 3 and folder.parents[3].name == "saved_saes"
    return {
        "model": folder.parents[2].name if ours_layout else None,
        "model_source": None,
        "model_weights": None,
        "layer": layer_from_path(str(folder)),
        "architecture": architecture,
        "kind": kind if ours_layout else None,
        "settings": settings,
        "checkpoint_pct": int(arch["pct"]) if arch and arch["pct"] else None,
        "fingerprint": ours.get("fingerprint"),
        "inferred_from": "folder names and cfg.json",
    }


def sae_record(folder: str | Path) -> RunRecord:
    """The SAE folder's run record; a folder without one gets a record inferred from its names and
    cfg.json, marked inferred, written beside it when the command using it finishes successfully
    (`lorasae.core.records.defer_inferred_record`): finding or checking an SAE in a command that then fails
    changes no file."""
    folder = Path(folder)
    found = read_record(folder)
    if found is not None:
        return found
    return defer_inferred_record(folder, SAE_RECORD_KIND, inferred_identity(folder))


def check_sae_model(source: str | Path, model_name_or_path: str) -> None:
    """Refuse (one line) to splice the SAE folder `source` into the model at `model_name_or_path` when
    the SAE's run record names another model: another weights digest (a local model), or another hub
    id. Sources without a record, or with an inferred one, are not checked (nothing says)."""
    folder = Path(source)
    if not folder.is_dir():
        return
    record = read_record(folder)
    if record is None or record.inferred or record.kind != SAE_RECORD_KIND:
        return
    trained = [(record.get("model_source"), record.get("model_weights"))]
    trained += [(m.get("source"), m.get("weights")) for m in record.get("models") or []]
    digest_now = model_weights_digest(model_name_or_path) if model_name_or_path else None
    if digest_now is not None:
        known = [w for _, w in trained if w]
        if not known or digest_now in known:
            return
    else:
        hub = [s for s, w in trained if s and not w]
        if not hub or model_name_or_path in hub or not model_name_or_path:
            return
    name, weights = trained[0]
    raise SaeModelMismatchError(
        f"The SAE {folder} was trained on another model ({name}"
        + (f", weights {weights}" if weights else "")
        + f") than {model_name_or_path}"
        + (f" (weights {digest_now})" if digest_now else "")
        + f", as its run record {record.path} says: splice an SAE trained on this model (python "
        "train_sae.py --model ...), or load the model it was trained on."
    )
