"""What a LoRA run leaves behind (SPEC §3.4), all written atomically:
- `data/TopK/CE_increase/<model>/<sae_tag>/peft_<a>-<b>_rank_<r>_CE_increase_<N/1000>k[__<variant>].json`
  `{"initial": L_SAE, "converged": L_LoRA, "difference": L_SAE − L_LoRA, "base": L_base}`, plus
  `"gap_flag": "non_positive_gap"` (or `"gap_within_noise"`) when the SAE did not raise the CE beyond
  its measurement noise (`lorasae.core.gap`);
- `data/TopK/val_loss/.../..._val_losses_<N/1000>k[__<variant>].json`: spliced CE list, first = before
  training;
- `data/TopK/time/.../..._time_<N/1000>k[__<variant>].json`: cumulative training minutes, first = 0;
- one row in `data/results.csv` (columns `lorasae.core.results_columns.RESULTS_COLUMNS`, read by
  `lorasae.results`; `frac_gap_closed` empty and `gap_flag` set when flagged; `gap_se` the gap's noise); a
  redone run replaces its own row (same fingerprint), never adds a second;
- with --save_model, the adapter in PEFT format at
  `saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>[__<variant>]/`, with its run record `run.json`;
- a run record (`lorasae.core.records`) beside each JSON, the CE_increase JSON's last: it is the completion
  record (a run is done only when it exists with the run's identity: `lorasae.store.lora_identity.run_state`).

`<variant>` is `paths.lora_variant` of the settings off their defaults (`identity.name_settings`); the
paper's default runs have none, so their names are the original repository's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from lorasae.core.atomic import append_csv_row, atomic_dir, atomic_write_json
from lorasae.core.paths import adapter_dir, lora_json_path, lora_variant, results_csv
from lorasae.core.records import ADAPTER_RECORD_KIND, LORA_RECORD_KIND, record_path, write_record
from lorasae.core.results_columns import RESULTS_COLUMNS
from lorasae.lora.adapters import format_layers
from lorasae.lora.trainer import LoraRunResult


@dataclass(frozen=True)
class RunId:
    """What names a run's output files: the SAE tag, layers, rank, example count, and the settings off
    their defaults (`identity.name_settings`, as sorted pairs), which `paths.lora_variant` writes."""

    model: str
    sae_tag: str
    lora_layers: tuple[int, ...]
    rank: int
    num_examples: int
    settings: tuple[tuple[str, Any], ...] = ()

    def variant(self, with_examples: bool = True) -> str:
        settings = dict(self.settings)
        if not with_examples:
            settings.pop("num_train_examples", None)
        return lora_variant(settings)

    def json_path(self, quantity: str, base: Path | None = None) -> Path:
        return lora_json_path(
            quantity,
            self.model,
            self.sae_tag,
            list(self.lora_layers),
            self.rank,
            self.num_examples,
            base,
            self.variant(with_examples=False),  # the name carries the example count already
        )

    def adapter_path(self, base: Path | None = None) -> Path:
        return adapter_dir(self.model, self.sae_tag, list(self.lora_layers), self.rank, base, self.variant())

    def done_path(self, base: Path | None = None) -> Path:
        """The run record, beside the CE_increase JSON and written last: the run is done only with it."""
        return record_path(self.json_path("CE_increase", base))


def write_run_records(
    run: RunId,
    identity: dict[str, Any],
    parents: Sequence[str],
    outputs: dict[str, str],
    base: Path | None = None,
) -> Path:
    """The run records of the curve JSONs, then last the CE_increase JSON's (the completion record)."""
    for quantity in ("val_loss", "time"):
        write_record(run.json_path(quantity, base), LORA_RECORD_KIND, identity, parents)
    return write_record(
        run.json_path("CE_increase", base), LORA_RECORD_KIND, identity, parents, extra={"outputs": outputs}
    )


def ce_increase(result: LoraRunResult) -> dict[str, Any]:
    """SPEC §3.4's four keys; plus `"gap_flag"` (`non_positive_gap` / `gap_within_noise`, `lorasae.core.gap`)
    when the SAE did not raise the CE beyond its measurement noise."""
    out: dict[str, Any] = {
        "initial": result.L_SAE,
        "converged": result.L_LoRA,
        "difference": result.L_SAE - result.L_LoRA,
        "base": result.L_base,
    }
    if result.gap_flag:
        out["gap_flag"] = result.gap_flag
    return out


def write_curves(run: RunId, result: LoraRunResult, base: Path | None = None) -> dict[str, Path]:
    """The three JSONs; returns their paths by quantity."""
    return {
        "CE_increase": atomic_write_json(run.json_path("CE_increase", base), ce_increase(result)),
        "val_loss": atomic_write_json(run.json_path("val_loss", base), result.val_losses),
        "time": atomic_write_json(run.json_path("time", base), result.minutes),
    }


def _number(value: float | None, digits: int = 6) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return round(float(value), digits)


def results_row(
    run: RunId,
    result: LoraRunResult,
    sae_sources: Sequence[str],
    sae_layers: Sequence[int],
    sae_width: float | None,
    sae_l0: float | None,
    checkpoint_pct: int | None,
    fingerprint_: str = "",
) -> dict[str, Any]:
    row = {
        "model": run.model,
        "sae_tag": run.sae_tag,
        "sae_source": ";".join(sae_sources),
        "sae_layers": format_layers(sae_layers),
        "lora_layers": format_layers(run.lora_layers),
        "rank": run.rank,
        "num_examples": run.num_examples,
        "sae_width": _number(sae_width, 2) if sae_width is not None else "",
        "sae_l0": _number(sae_l0, 3) if sae_l0 is not None else "",
        "checkpoint_pct": checkpoint_pct if checkpoint_pct is not None else "",
        "L_base": _number(result.L_base),
        "L_SAE": _number(result.L_SAE),
        "L_LoRA": _number(result.L_LoRA),
        "ce_gap": _number(result.ce_gap),
        "gap_se": _number(result.gap_se),  # the gap's standard error (lorasae.core.gap.paired_gap_se)
        "ce_improvement": _number(result.ce_improvement),
        "frac_gap_closed": _number(result.frac_gap_closed),  # empty when flagged
        "gap_flag": result.gap_flag or "",
        "minutes": _number(result.total_minutes, 4),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint_,
    }
    assert tuple(row) == RESULTS_COLUMNS
    return row


def replaced_fingerprint(run: RunId, base: Path | None = None) -> str | None:
    """The fingerprint of the run whose outputs lie under this run's names now (its completion record's
    identity digest), or None (none, or a damaged record)."""
    from lorasae.core.errors import CorruptFileError
    from lorasae.core.records import read_record

    try:
        record = read_record(run.json_path("CE_increase", base))
    except CorruptFileError:
        return None
    return record.identity_digest if record is not None else None


def append_result(row: dict[str, Any], base: Path | None = None, replaces: str | None = None) -> Path:
    """Append the run's row to results.csv, dropping an earlier row of the same run (same fingerprint: a
    redone run) and the row of the run whose outputs this one replaced (`replaces`, `--overwrite`), so
    that no run has two rows and no row describes outputs that are gone. Concurrent writers take turns
    on the lock file `atomic.append_csv_row` uses."""
    gone = {str(row.get("fingerprint") or ""), replaces or ""} - {""}
    return append_csv_row(results_csv(base), row, drop=lambda r: r.get("fingerprint") in gone)


def save_adapter(
    peft_model: nn.Module, path: Path, identity: dict[str, Any], parents: Sequence[str] = ()
) -> Path:
    """`peft_model.save_pretrained` and the adapter's run record into a temporary sibling, renamed onto
    `path`: an adapter folder of ours always holds its record."""
    with atomic_dir(path) as tmp:
        peft_model.save_pretrained(str(tmp))
        write_record(tmp, ADAPTER_RECORD_KIND, identity, parents)
    return path
