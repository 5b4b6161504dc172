"""The one rule by which readers choose among results of one eval that differ only in settings (issue 25):
each result's settings variant is read from its run record; the default settings first, else the newest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lorasae.core.records import RECORD_SUFFIX, RunRecord, read_record


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
    variants = {c.variant for c in candidates}
    if len(variants) > 1:  # several files of one variant (e.g. one per combination) are no choice of settings
        why = "the default settings" if defaults else "the newest"
        others = ", ".join(sorted({c.variant or "defaults" for c in candidates if c is not chosen}))
        print(f"note: {what}: {len(variants)} settings; using {chosen.path} ({why}); others: {others}")
    return chosen


def variant_files(folder: Path, stem: str) -> list[Found]:
    """`<folder>/<stem>.json` and every `<stem>__<variant>.json` that exist, with their records."""
    paths = [folder / f"{stem}.json", *sorted(folder.glob(f"{stem}__*.json"))]
    return [found(p) for p in paths if p.is_file() and not p.name.endswith(RECORD_SUFFIX)]


def find_result(folder: Path, stem: str, what: str, variant: str | None = None) -> Path | None:
    """The result file `<stem>[__<variant>].json` in `folder` that `pick_result` takes (None: none)."""
    chosen = pick_result(variant_files(folder, stem), what, variant)
    return chosen.path if chosen is not None else None
