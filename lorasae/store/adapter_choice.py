"""The one rule for "the default adapter of an SAE", stated once (`DEFAULT_ADAPTER_RULE`, shown in every
eval's `--help`) and applied by `store.adapters.default_adapter` for every eval: which adapters count
(`run_completed`: the LoRA run that saved it is done by `lorasae.lora.identity.run_state`), the order among
them (`preference`), an eval's own wishes as an explicit filter (`AdapterFilter`, e.g. steering's rank-1
`after` adapter), and the one line each eval prints about the adapter it runs with (`adapter_line`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorasae.errors import CorruptFileError
from lorasae.records import RECORD_SUFFIX, RunRecord, read_record

DEFAULT_ADAPTER_RULE = (
    "Default adapter of an SAE (the same rule in every eval): among the adapters saved for that SAE whose "
    "LoRA run completed (its adapter and CE_increase run records agree) and that were trained on the SAE's "
    "weights as they are now (matching the eval's rank / layer span / example count when it asks for "
    "one), the widest layer span, then the highest rank, then the most training examples, then the "
    "newest. Adapters without a run record of their own (made before run records, or the original "
    "repository's) count only when no completed run matches; one trained on other SAE weights is refused."
)


def adapter_help(what: str) -> str:
    """The `--help` text of an eval's adapter flag: what the flag is, then the one rule."""
    return f"{what} {DEFAULT_ADAPTER_RULE}"


@dataclass(frozen=True)
class AdapterFilter:
    """What an eval asks of its default adapter (None: any); the rule then picks among the matches."""

    rank: int | None = None
    lora_span: str | None = None
    """`<a>-<b>`: the adapter's first and last LoRA layer."""
    num_examples: int | None = None

    def describe(self) -> str:
        parts = [
            f"{name} {value}"
            for name, value in (
                ("rank", self.rank),
                ("layers", self.lora_span),
                ("examples", self.num_examples),
            )
            if value is not None
        ]
        return ", ".join(parts) if parts else "any"


def _ce_candidates(adapter: Path, record: RunRecord) -> list[Path]:
    """The CE_increase JSONs the run that saved `adapter` may have written (its name, with any variant)."""
    from lorasae.paths import lora_json_path

    identity = record.identity
    layers = [int(x) for x in identity.get("lora_layers") or []]
    if len(adapter.parents) < 5 or not layers or identity.get("rank") is None:
        return []
    try:
        plain = lora_json_path(
            "CE_increase",
            str(identity.get("model") or adapter.parents[2].name),
            str(identity.get("sae_tag") or adapter.parents[1].name),
            layers,
            int(identity["rank"]),
            int(identity.get("num_train_examples") or 0),
            adapter.parents[4],
        )
    except (TypeError, ValueError):
        return []
    variants = sorted(plain.parent.glob(f"{plain.stem}__*.json")) if plain.parent.is_dir() else []
    return [plain, *(p for p in variants if not p.name.endswith(RECORD_SUFFIX))]


def own_record(adapter: Path) -> RunRecord | None:
    """The adapter's own run record (None: none, an inferred one, or a damaged one)."""
    try:
        record = read_record(adapter)
    except CorruptFileError:
        return None
    return record if record is not None and not record.inferred else None


def run_completed(adapter: Path) -> bool:
    """The LoRA run that saved `adapter` is done (`lorasae.lora.identity.run_state`): its CE_increase run
    record, written last, holds the identity the adapter's own record holds."""
    from lorasae.lora.identity import run_state

    record = own_record(adapter)
    if record is None:
        return False
    return any(
        run_state(ce, adapter, lambda: record.identity, str(adapter)).done
        for ce in _ce_candidates(adapter, record)
    )


def preference(adapter: Path, identity: dict) -> tuple[int, int, int, float]:
    """The order among the matching adapters: the widest layer span, then the highest rank, then the most
    training examples, then the newest (its adapter_config.json's time)."""
    layers = identity.get("lora_layers") or []
    width = max(layers) - min(layers) + 1 if layers else 0
    return (
        width,
        int(identity.get("rank") or 0),
        int(identity.get("num_train_examples") or 0),
        (adapter / "adapter_config.json").stat().st_mtime,
    )


def adapter_line(adapter: str | Path | None, what: str = "") -> str:
    """The line an eval prints at its start: which adapter runs (its path and its record's key settings),
    or that none does."""
    label = f"{what}: " if what else ""
    if adapter is None:
        return f"{label}adapter: none (base model only)"
    from lorasae.store.adapter_records import adapter_record

    record = adapter_record(Path(adapter))
    layers = record.get("lora_layers") or []
    span = f"{min(layers)}-{max(layers)}" if layers else "?"
    examples = record.get("num_train_examples")
    digests = [d for d in record.get("sae_weights_digests") or [] if d]
    parts = [
        f"rank {record.get('rank')}",
        f"layers {span}",
        f"{examples:,} examples" if isinstance(examples, int) else "examples unknown",
        f"SAE {record.get('sae_tag')}",
        f"SAE weights {', '.join(d[:12] for d in digests)}" if digests else "SAE weights unrecorded",
        "record inferred (no run record of its own)" if record.inferred else "run record",
    ]
    return f"{label}adapter: {adapter} ({'; '.join(parts)})"


__all__ = [
    "DEFAULT_ADAPTER_RULE",
    "AdapterFilter",
    "adapter_help",
    "adapter_line",
    "own_record",
    "preference",
    "run_completed",
]
