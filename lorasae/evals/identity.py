"""Run identity of eval results (issue 25): the slot a result is written to is named by the SAE (and the
adapter) it was computed with and by the eval's settings that differ from the script's defaults (the
variant, `lorasae.core.paths.settings_variant`; default settings keep the original names), and each result gets
a run record naming the model and its weights digest, the SAE sources and their digests, the adapter and
its run record, the eval's settings and the variant. Readers find results through those records and, when
one SAE has results of several settings, pick one by `pick_result` (the one rule).

An identical rerun (a result whose record names the same identity) is skipped, saying so, unless
`--overwrite` (`done_already`, the one rule every eval suite uses).

Used by SAE-Bench (`lorasae.saebench`), the lm-eval benchmarks (`lorasae.lmeval`) and steering.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from lorasae.core.fingerprint import weights_digest
from lorasae.core.paths import portable, sanitize
from lorasae.core.records import digest, read_record, write_record

# settings that never change an eval's numbers (`peft_dict`: which file carried the merged weights; what was
# merged is the adapter and the merge dtype, and the file used is a parent in the result's record)
NOT_IDENTITY = frozenset(
    {"device", "wandb", "progress", "output_dir", "plot", "debug", "api_key_env", "overwrite", "peft_dict"}
)


def adapter_label(adapter: str | Path) -> str:
    """`peft_<a>-<b>_rank_<r>[__<variant>]` for adapters in the project's layout, else the folder's name;
    followed by `-<digest>` of the adapter's run record identity, so two different adapters never share
    a label (a record-less adapter gets its inferred record here)."""
    from lorasae.store.adapter_records import adapter_record

    adapter = Path(adapter)
    if adapter.name.startswith("rank_") and adapter.parent.name.startswith("peft_"):
        name = f"{adapter.parent.name}_{adapter.name}"
    else:
        name = adapter.name
    return f"{sanitize(name)}-{adapter_record(adapter).identity_digest[:8]}"


def result_slot(sae_tag: str, adapter: str | Path | None = None) -> str:
    """One slot per SAE (`<sae_tag>`) and, with an adapter, per SAE and adapter (`<sae_tag>__<label>`)."""
    tag = sanitize(sae_tag)
    return f"{tag}__{adapter_label(adapter)}" if adapter is not None else tag


def source_slot(sae_source: str, adapter: str | Path | None = None) -> str:
    """`result_slot` for an SAE known by its source (a folder: its path under the output root; a sae-lens
    `release/sae_id`: that id), one path component."""
    return result_slot(sanitize(portable_source(sae_source)), adapter)


def portable_source(text: str | Path) -> str:
    """A source as run records name it: a folder or file by `portable` (relative to the output root when
    inside it, so a moved root still matches), anything else (a hub id, `release/sae_id`) as given."""
    return portable(text) if Path(text).expanduser().exists() else str(text)


PATH_SETTINGS = frozenset({"dataset", "forget_corpus"})
"""Eval settings that may name a local file or folder (else a hub name): recorded by `portable_source`."""


def portable_settings(settings: Mapping[str, Any], keys: Collection[str] = PATH_SETTINGS) -> dict[str, Any]:
    """`settings` with each text value of `keys` as records name it (`portable_source`: a local path inside
    the output root relative to it, typed absolute or relative to the current folder, so a moved root still
    finds its results; a hub name as typed)."""
    return {
        k: portable_source(v) if k in keys and isinstance(v, str) and v else v for k, v in settings.items()
    }


def eval_identity(
    model_name: str,
    sae_sources: Sequence[str],
    adapter: str | Path | None,
    settings: Mapping[str, Any],
    variant: str = "",
) -> dict[str, Any]:
    """What decided an eval result's numbers; `variant`: the settings off the script's defaults as they
    appear in the result's path (readers tell default-settings results from others by it)."""
    from lorasae.core.records import model_weights_digest
    from lorasae.model.load import model_key
    from lorasae.store.adapter_records import adapter_record
    from lorasae.store.lora_identity import local_model

    model_path = local_model(model_name)
    return {
        "model": model_key(model_name),
        "model_source": portable_source(model_path),
        "model_weights_digest": model_weights_digest(model_path),
        "sae_sources": [portable_source(s) for s in sae_sources],
        "sae_weights_digests": [weights_digest(s) for s in sae_sources],
        "adapter": portable_source(str(adapter)) if adapter is not None else None,
        "adapter_identity": adapter_record(adapter).identity_digest if adapter is not None else None,
        "settings": {k: v for k, v in sorted(portable_settings(settings).items()) if k not in NOT_IDENTITY},
        "variant": variant,
    }


def write_eval_record(
    path: Path, kind: str, identity: Mapping[str, Any], inputs: Sequence[Path] = ()
) -> Path:
    """The result's run record (after the result itself); parents: the SAEs' and the adapter's records, and
    those of the other output files `inputs` it was computed from (e.g. a merged state dict)."""
    from lorasae.core.paths import from_portable
    from lorasae.core.records import record_path

    parents = []
    for source in [*identity.get("sae_sources", []), identity.get("adapter")]:
        if source is None:
            continue
        local = from_portable(source)
        record = record_path(local) if local.is_dir() else None
        parents.append(str(record) if record is not None and record.is_file() else source)
    for output in inputs:
        record = record_path(output)
        parents.append(str(record) if record.is_file() else portable_source(output))
    return write_record(path, kind, identity, parents)


def done_already(
    what: str,
    path: str | Path,
    identity: Mapping[str, Any],
    overwrite: bool = False,
    ignore: Collection[str] = (),
) -> bool:
    """True when `path` exists with a run record naming exactly `identity` (the same SAE and weights, the same
    adapter, model and settings; settings that never change the numbers, `NOT_IDENTITY`, are left out on
    both sides, and the identity's fields `ignore`, which the run decides only as it goes): the identical
    rerun is skipped, and one line says so. False (do the work) with `overwrite`, or when the result is
    missing, has no record, or was made by another run."""
    path = Path(path)
    if overwrite or not path.exists():
        return False
    record = read_record(path)
    if record is None or comparable(record.identity, ignore) != comparable(identity, ignore):
        return False
    print(
        f"{what}: {portable(path)} exists for these settings (run record {portable(record.path)}); "
        "skipped — --overwrite redoes it"
    )
    return True


def comparable(identity: Mapping[str, Any], ignore: Collection[str] = ()) -> str:
    """The digest two eval identities are compared by: their settings less `NOT_IDENTITY`, less `ignore`."""
    ident = json.loads(json.dumps(dict(identity), sort_keys=True, default=str))
    ident = {k: v for k, v in ident.items() if k not in ignore}
    if isinstance(ident.get("settings"), dict):
        ident["settings"] = {k: v for k, v in ident["settings"].items() if k not in NOT_IDENTITY}
    return digest(ident)
