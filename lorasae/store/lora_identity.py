"""A LoRA run's identity (issue 25): what names its outputs, what its run record says, and the one "done"
rule that train_lora.py, sweep.py and the demo all ask.

- `name_settings(cfg, default)`: the settings that differ from the defaults; they go into the output names
  (`lorasae.core.paths.lora_variant`), so two runs differing in any setting never share a path, while the
  paper's default runs keep the original repository's names.
- `run_identity(...)`: everything that decided the run's numbers (model and its weights digest, data, SAE
  sources and their weights digests, layers, rank, examples, every numeric setting): the run record's
  `identity`, whose digest is the run's fingerprint (results.csv's `fingerprint` column).
- `run_state(run_id, identity)`: `done` (the run record beside its CE_increase JSON, written last, has this
  identity, and the adapter too when one is to be saved), `new`, `incomplete` (outputs without their
  record), `damaged` (the record is unreadable) or `different` (the outputs were made by another run under
  the same name, e.g. from a retrained SAE); with the one line a rerun prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasae.core.errors import CorruptFileError
from lorasae.core.fingerprint import differing, weights_digest
from lorasae.core.paths import LORA_NAME_KEYS, portable
from lorasae.core.records import RunRecord, digest, model_weights_digest, read_record, record_path

PAPER_EXAMPLES = 15_000

# settings that do not change a run's numbers (where it prints, what else it saves, whether it reruns)
NOT_IDENTITY = frozenset(
    {"device", "wandb", "progress", "skip_existing", "overwrite", "save_model", "checkpoint_percent"}
)
# settings the identity holds once, at its top level, resolved (the model and data as portable paths, the
# SAE sources and layers, the LoRA layers and rank), not as the flags that selected them
_TOP_LEVEL = frozenset(
    {"model", "model_type", "dataset", "sae", "sae_layer", "sae_kind", "expansion_factor", "k", "LoRA_layers"}
    | {"architecture", "rank", "num_train_examples"}
)


def name_settings(cfg: Any, default: Any) -> dict[str, Any]:
    """The settings of the resolved config `cfg` that differ from `default` (the resolved config of the
    same model and example count with every other flag at its default), by `LORA_NAME_KEYS`; the example
    count when it differs from the paper's 15,000."""
    out = {
        key: getattr(cfg, key)
        for key in LORA_NAME_KEYS
        if key != "num_train_examples" and getattr(cfg, key) != getattr(default, key)
    }
    if "dataset" in out and Path(str(out["dataset"])).expanduser().exists():
        out["dataset"] = portable(out["dataset"])  # the same name when the output root moves
    if cfg.num_train_examples != PAPER_EXAMPLES:
        out["num_train_examples"] = cfg.num_train_examples
    return out


def _portable_source(source: str) -> str:
    return portable(source) if Path(source).expanduser().exists() else source


def local_model(name: str) -> str:
    """The folder a model name loads from when it is local (the built-in one, a path); else the name."""
    from lorasae.model.load import resolve_model_name

    try:
        return resolve_model_name(name)
    except Exception:  # an unknown name fails later, with its own message, where the model loads
        return name


def run_identity(
    cfg: Any, sae_sources: Sequence[str], sae_layers: Sequence[int], lora_layers: Sequence[int], sae_tag: str
) -> dict[str, Any]:
    """Everything that decided a LoRA run's numbers (the run record's identity)."""
    model_path = local_model(cfg.model_name)
    dataset = str(cfg.dataset) if cfg.dataset is not None else None
    return {
        "model": cfg.model_key,
        "model_source": _portable_source(model_path),
        "model_weights_digest": model_weights_digest(model_path),
        "dataset": _portable_source(dataset) if dataset else dataset,
        "sae_sources": [_portable_source(s) for s in sae_sources],
        "sae_weights_digests": [weights_digest(s) for s in sae_sources],
        "sae_tag": sae_tag,
        "sae_layers": [int(x) for x in sae_layers],
        "lora_layers": [int(x) for x in lora_layers],
        "rank": cfg.rank,
        "num_train_examples": cfg.num_train_examples,
        "settings": {
            k: v for k, v in sorted(vars(cfg).items()) if k not in NOT_IDENTITY and k not in _TOP_LEVEL
        },
    }


def identity_digest(identity: Mapping[str, Any]) -> str:
    """The digest a run record stores for `identity` (`records.write_record` normalises it the same way)."""
    return digest(json.loads(json.dumps(dict(identity), sort_keys=True, default=str)))


def sae_parents(sae_sources: Sequence[str]) -> list[str]:
    """The SAE runs a LoRA run built on: their run records where they have one, else the sources."""
    out = []
    for source in sae_sources:
        record = record_path(source) if Path(source).is_dir() else None
        out.append(str(record) if record is not None and record.is_file() else source)
    return out


@dataclass(frozen=True)
class RunState:
    """Where a planned run stands (`state`) and the one line a rerun prints about it (`note`)."""

    state: str
    note: str = ""

    @property
    def done(self) -> bool:
        return self.state == "done"


def _read(path: Path) -> tuple[RunRecord | None, str]:
    try:
        return read_record(path), ""
    except CorruptFileError as err:
        return None, str(err)


def run_state(
    ce_json: Path,
    adapter: Path | None,
    identity: Callable[[], Mapping[str, Any]],
    label: str,
) -> RunState:
    """The one "done" rule. `ce_json`: the run's CE_increase JSON (its run record is written last);
    `adapter`: its adapter folder when the run saves one (saved with its record inside, in one rename);
    `identity`: this run's identity, computed only when a record exists."""
    record, damage = _read(ce_json)
    if damage:
        return RunState("damaged", f"Redoing {label}: {damage}")
    adapter_record, adapter_damage = _read(adapter) if adapter is not None else (None, "")
    wanted: dict[str, Any] | None = None

    def other_run(path: Path, found: RunRecord) -> RunState:
        normal = json.loads(json.dumps(wanted or {}, sort_keys=True, default=str))
        changed = ", ".join(differing(found.identity, normal)) or "identity"
        return RunState(
            "different",
            f"{path} was made by another run under the same name (differs in: {changed}); pass "
            "--overwrite to replace it, or change a setting so that this run gets its own name.",
        )

    if adapter is not None and adapter.exists() and adapter_record is None and not adapter_damage:
        return RunState(
            "different",
            f"{adapter} holds an adapter without a run record (made before run records, or by another "
            "tool); pass --overwrite to replace it, or move it away.",
        )
    if record is None:
        if adapter_record is not None:
            wanted = dict(identity())
            if adapter_record.identity_digest != identity_digest(wanted):
                return other_run(adapter, adapter_record)
        written = [p for p in (ce_json, adapter) if p is not None and p.exists()]
        if not written:
            return RunState("new")
        return RunState(
            "incomplete",
            f"Redoing {label}: {written[0]} exists without the run record {record_path(ce_json).name} "
            "(a run stopped before it finished, or one made before run records).",
        )
    wanted = dict(identity())
    if record.identity_digest != identity_digest(wanted):
        return other_run(ce_json, record)
    if adapter_record is not None and adapter_record.identity_digest != record.identity_digest:
        return other_run(adapter, adapter_record)
    if adapter is not None and adapter_record is None:
        why = adapter_damage or f"{adapter} missing"
        return RunState("incomplete", f"Redoing {label}: its adapter is missing ({why}).")
    return RunState(
        "done", f"Skipping {label}: an identical run is done ({ce_json}); pass --overwrite to redo it."
    )
