"""Run identity of eval results (issue 25): the slot a result is written to is named by the SAE (and the
adapter) it was computed with and by the eval's settings that differ from the script's defaults (the
variant, `lorasae.paths.settings_variant`; default settings keep the original names), and each result gets
a run record naming the model and its weights digest, the SAE sources and their digests, the adapter and
its run record, the eval's settings and the variant. Readers find results through those records and, when
one SAE has results of several settings, pick one by `pick_result` (the one rule).

Used by SAE-Bench (`lorasae.saebench`), the lm-eval benchmarks (`lorasae.benchmarks`) and steering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasae.fingerprint import weights_digest
from lorasae.paths import portable, sanitize
from lorasae.records import RECORD_SUFFIX, RunRecord, read_record, write_record

# settings that never change an eval's numbers
NOT_IDENTITY = frozenset({"device", "wandb", "progress", "output_dir", "plot", "debug", "api_key_env"})


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
    return result_slot(sanitize(_source(sae_source)), adapter)


def _source(text: str) -> str:
    return portable(text) if Path(text).expanduser().exists() else text


def eval_identity(
    model_name: str,
    sae_sources: Sequence[str],
    adapter: str | Path | None,
    settings: Mapping[str, Any],
    variant: str = "",
) -> dict[str, Any]:
    """What decided an eval result's numbers; `variant`: the settings off the script's defaults as they
    appear in the result's path (readers tell default-settings results from others by it)."""
    from lorasae.lora.identity import local_model
    from lorasae.models import model_key
    from lorasae.records import model_weights_digest
    from lorasae.store.adapter_records import adapter_record

    model_path = local_model(model_name)
    return {
        "model": model_key(model_name),
        "model_source": _source(model_path),
        "model_weights_digest": model_weights_digest(model_path),
        "sae_sources": [_source(s) for s in sae_sources],
        "sae_weights_digests": [weights_digest(s) for s in sae_sources],
        "adapter": _source(str(adapter)) if adapter is not None else None,
        "adapter_identity": adapter_record(adapter).identity_digest if adapter is not None else None,
        "settings": {k: v for k, v in sorted(settings.items()) if k not in NOT_IDENTITY},
        "variant": variant,
    }


def write_eval_record(path: Path, kind: str, identity: Mapping[str, Any]) -> Path:
    """The result's run record (after the result itself); parents: the SAEs' and the adapter's records."""
    from lorasae.paths import from_portable
    from lorasae.records import record_path

    parents = []
    for source in [*identity.get("sae_sources", []), identity.get("adapter")]:
        if source is None:
            continue
        local = from_portable(source)
        record = record_path(local) if local.is_dir() else None
        parents.append(str(record) if record is not None and record.is_file() else source)
    return write_record(path, kind, identity, parents)


# --- readers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """One result a reader could use: its file (or slot folder), its run record (None for a result made
    before records) and its settings variant: the record's; for a record written before records named
    it, `legacy_variant` (what the result's own naming scheme said, '' where it had none)."""

    path: Path
    record: RunRecord | None
    legacy_variant: str = ""

    @property
    def variant(self) -> str:
        if self.record is not None and "variant" in self.record.identity:
            return str(self.record.identity["variant"] or "")
        return self.legacy_variant

    @property
    def stamp(self) -> float:
        return self.path.stat().st_mtime if self.path.exists() else 0.0


def found(path: str | Path, legacy_variant: str = "") -> Found:
    """`path` with its run record (a damaged record raises `CorruptFileError` naming it)."""
    return Found(Path(path), read_record(path), legacy_variant)


def pick_result(candidates: Sequence[Found], what: str, variant: str | None = None) -> Found | None:
    """The one rule by which readers choose among results of the same eval that differ only in settings:
    with `variant` given, the result of exactly those settings (None if there is none); else the result
    of the default settings, else the newest. When there was a choice, prints which one it took and why."""
    if variant is not None:
        exact = [c for c in candidates if c.variant == variant]
        return max(exact, key=lambda c: c.stamp) if exact else None
    if not candidates:
        return None
    defaults = [c for c in candidates if c.variant == ""]
    chosen = max(defaults or candidates, key=lambda c: c.stamp)
    if len(candidates) > 1:
        why = "the default settings" if defaults else "the newest"
        others = ", ".join(sorted({c.variant or "defaults" for c in candidates if c is not chosen}))
        print(f"note: {what}: {len(candidates)} results; using {chosen.path} ({why}); others: {others}")
    return chosen


def variant_files(folder: Path, stem: str) -> list[Found]:
    """`<folder>/<stem>.json` and every `<stem>__<variant>.json` that exist, with their records."""
    paths = [folder / f"{stem}.json", *sorted(folder.glob(f"{stem}__*.json"))]
    return [found(p) for p in paths if p.is_file() and not p.name.endswith(RECORD_SUFFIX)]


def find_result(folder: Path, stem: str, what: str, variant: str | None = None) -> Path | None:
    """The result file `<stem>[__<variant>].json` in `folder` that `pick_result` takes (None: none)."""
    chosen = pick_result(variant_files(folder, stem), what, variant)
    return chosen.path if chosen is not None else None
