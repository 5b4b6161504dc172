"""Run records: every output knows what made it (SPEC §3.4, issue 25).

A run record is a small JSON file written *last*, beside the output it describes:
- for an output folder (an SAE, a checkpoint, an adapter): `<folder>/run.json`;
- for an output file (a curve, a LoRA result, an eval result): `<file name>.run.json` next to it.

It names everything that decided the output's numbers (its `identity`: model and its weights digest, data,
SAE sources and their digests, layers, rank, examples, every setting) plus what the run was (`kind`, the
command line, when, the parent runs it built on, the lorasae version). `identity_digest` is one hash of
`identity`; two outputs are the same run exactly when their digests are equal.

The store finds runs by reading these records; it never infers identity from a folder name. Outputs made
before records existed (or by other tools) get a record the first time they are used
(`ensure_record(..., inferred=...)`), marked `"inferred": true` so nobody mistakes it for a measured one.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lorasae.core.atomic import atomic_write_json, read_output_json
from lorasae.core.errors import CorruptFileError, at_command_end
from lorasae.core.fingerprint import DIGEST_CHARS, file_digest

RECORD_NAME = "run.json"
RECORD_SUFFIX = ".run.json"
SCHEMA = 1
MODEL_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

# The kinds of run this project records, named once for the writers (train/, lora/) and the store:
SAE_RECORD_KIND = "sae"  # an SAE folder (final or checkpoint)
CURVE_RECORD_KIND = "sae_curve"  # an SAE's training curve file
LORA_RECORD_KIND = "lora_run"  # a LoRA run's result files
ADAPTER_RECORD_KIND = "lora_adapter"  # a saved LoRA adapter folder


def record_path(output: str | Path) -> Path:
    """Where `output`'s record lives: `<folder>/run.json` for a folder, `<file>.run.json` for a file.

    An output that does not exist yet counts as a folder when its name has no known file ending (SAE
    folders are named `model.layers.<L>`, so the last suffix alone does not decide)."""
    output = Path(output)
    if output.is_dir() or (not output.exists() and not _looks_like_file(output)):
        return output / RECORD_NAME
    return output.with_name(output.name + RECORD_SUFFIX)


def _looks_like_file(path: Path) -> bool:
    return path.suffix.lower() in {".json", ".csv", ".png", ".pdf", ".safetensors", ".jsonl", ".npz", ".pt"}


def digest(obj: Any) -> str:
    """One hash of a JSON-able object (keys sorted; non-JSON values by `str`)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


_MODEL_DIGESTS: dict[tuple[str, int, int], str] = {}


def model_weights_digest(name_or_path: str | Path) -> str | None:
    """The digest of a local model folder's weight files (their bytes, in name order; cached per process by
    path, size and mtime); None for a hub name (its name, and revision where given, identify it)."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.suffix in MODEL_WEIGHT_SUFFIXES and p.is_file())
    if not files:
        return None
    parts = []
    for path in files:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _MODEL_DIGESTS:
            _MODEL_DIGESTS[key] = file_digest(path)
        parts.append([path.name, _MODEL_DIGESTS[key]])
    return digest(parts)


@dataclass(frozen=True)
class RunRecord:
    """A parsed run record."""

    path: Path
    kind: str
    identity: dict[str, Any]
    identity_digest: str
    parents: list[str] = field(default_factory=list)
    inferred: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """A field of the identity (e.g. `record.get("model")`)."""
        return self.identity.get(key, default)


def write_record(
    output: str | Path,
    kind: str,
    identity: Mapping[str, Any],
    parents: Sequence[str | Path] = (),
    extra: Mapping[str, Any] | None = None,
    inferred: bool = False,
) -> Path:
    """Write `output`'s record (atomically; call it after every other write of the run)."""
    ident = json.loads(json.dumps(dict(identity), sort_keys=True, default=str))
    record = {
        "schema": SCHEMA,
        "kind": kind,
        "identity": ident,
        "identity_digest": digest(ident),
        "parents": [str(p) for p in parents],
        "inferred": inferred,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lorasae_version": _version(),
        **({"extra": dict(extra)} if extra else {}),
    }
    return atomic_write_json(record_path(output), record)


def read_record(output: str | Path) -> RunRecord | None:
    """`output`'s record, or None when it has none. A damaged record raises `CorruptFileError` naming it
    (regenerate the output, or delete the record to have it inferred again)."""
    path = record_path(output)
    if not path.is_file():
        return None
    try:
        raw = read_output_json(path)
    except CorruptFileError as err:
        raise CorruptFileError(
            f"{path}: the run record of {Path(output).name} is not valid JSON; rerun the step that made "
            f"{output} (or delete {path.name} to have it described again from the output)."
        ) from err
    try:
        identity = dict(raw["identity"])
        return RunRecord(
            path=path,
            kind=str(raw["kind"]),
            identity=identity,
            identity_digest=str(raw.get("identity_digest") or digest(identity)),
            parents=[str(p) for p in raw.get("parents", [])],
            inferred=bool(raw.get("inferred", False)),
            extra=dict(raw.get("extra") or {}),
        )
    except (KeyError, TypeError, ValueError) as err:
        what = err.args[0] if isinstance(err, KeyError) else err
        raise CorruptFileError(
            f"{path}: the run record of {Path(output).name} lacks '{what}' (not a lorasae run record); rerun "
            f"the step that made {output} (or delete {path.name} to have it described again)."
        ) from err


def ensure_record(output: str | Path, kind: str, inferred: Mapping[str, Any]) -> RunRecord:
    """`output`'s record; a legacy or external output without one gets a record the first time it is used,
    describing what can be read from the output itself (`inferred`), marked as inferred."""
    found = read_record(output)
    if found is not None:
        return found
    write_record(output, kind, inferred, inferred=True)
    record = read_record(output)
    assert record is not None
    return record


_DEFERRED: dict[Path, tuple[str, dict[str, Any]]] = {}


def defer_inferred_record(output: str | Path, kind: str, inferred: Mapping[str, Any]) -> RunRecord:
    """`output`'s record; for a legacy or external output without one, a record inferred from the output
    itself (marked inferred) that is written beside it only when the command finishes successfully (the
    error boundary, `lorasae.core.errors.main_guard`, calls `write_deferred`): a command that fails changes no
    file. Outside a guarded command the record stays in memory. Later calls in the same process get the
    same record."""
    found = read_record(output)
    if found is not None:
        return found
    path = record_path(output)
    if path not in _DEFERRED:
        _DEFERRED[path] = (kind, json.loads(json.dumps(dict(inferred), sort_keys=True, default=str)))
    kind_, identity = _DEFERRED[path]
    return RunRecord(path, kind_, identity, digest(identity), inferred=True)


def write_deferred() -> list[Path]:
    """Write the records deferred by `defer_inferred_record` whose outputs still have none (a read-only
    folder is skipped: it stays described in memory); returns the paths written."""
    written = []
    for path, (kind, identity) in list(_DEFERRED.items()):
        output = path.parent if path.name == RECORD_NAME else path.with_name(path.name[: -len(RECORD_SUFFIX)])
        if output.exists() and not path.exists():
            try:
                write_record(output, kind, identity, inferred=True)
                written.append(path)
            except OSError:
                pass
    _DEFERRED.clear()
    return written


def drop_deferred() -> None:
    """Forget the deferred records (the command failed: nothing is written)."""
    _DEFERRED.clear()


at_command_end(write_deferred, drop_deferred)


def same_run(output: str | Path, identity: Mapping[str, Any]) -> bool:
    """True when `output` has a record whose identity equals `identity` (an identical rerun)."""
    record = read_record(output)
    return record is not None and record.identity_digest == digest(
        json.loads(json.dumps(dict(identity), sort_keys=True, default=str))
    )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lorasae")
    except Exception:  # not installed (a bare checkout on PYTHONPATH)
        return "unknown"
