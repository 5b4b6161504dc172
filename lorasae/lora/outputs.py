"""What a LoRA run leaves behind (SPEC §3.4), all written atomically:
- `data/TopK/CE_increase/<model>/<sae_tag>/peft_<a>-<b>_rank_<r>_CE_increase_<N/1000>k.json`
  `{"initial": L_SAE, "converged": L_LoRA, "difference": L_SAE − L_LoRA, "base": L_base}`, plus
  `"gap_flag": "non_positive_gap"` (or `"gap_within_noise"`) when the SAE did not raise the CE beyond
  its measurement noise (`lorasae.gap`);
- `data/TopK/val_loss/.../..._val_losses_<N/1000>k.json`: spliced CE list, first = before training;
- `data/TopK/time/.../..._time_<N/1000>k.json`: cumulative training minutes, first = 0;
- one row in `data/results.csv` (columns `lorasae.results_columns.RESULTS_COLUMNS`, read by
  `lorasae.results`; `frac_gap_closed` empty and `gap_flag` set when flagged; `gap_se` the gap's noise);
- with --save_model, the adapter in PEFT format at `saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>/`;
- last, the completion record `data/TopK/done/.../..._done_<N/1000>k.json` (fingerprint, settings, the
  outputs): a run is done only when it exists, so a run killed between its writes is redone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from lorasae.atomic import append_csv_row, atomic_dir, atomic_write_json, read_json
from lorasae.fingerprint import fingerprint, weights_digest
from lorasae.lora.adapters import format_layers
from lorasae.lora.trainer import LoraRunResult
from lorasae.paths import adapter_dir, lora_json_path, results_csv
from lorasae.results_columns import RESULTS_COLUMNS


@dataclass(frozen=True)
class RunId:
    """What names a run's output files."""

    model: str
    sae_tag: str
    lora_layers: tuple[int, ...]
    rank: int
    num_examples: int

    def json_path(self, quantity: str, base: Path | None = None) -> Path:
        return lora_json_path(
            quantity, self.model, self.sae_tag, list(self.lora_layers), self.rank, self.num_examples, base
        )

    def adapter_path(self, base: Path | None = None) -> Path:
        return adapter_dir(self.model, self.sae_tag, list(self.lora_layers), self.rank, base)

    def done_path(self, base: Path | None = None) -> Path:
        return self.json_path("done", base)


# settings that do not change a run's numbers (where it prints, what else it saves)
_NOT_FINGERPRINTED = frozenset(
    {"device", "wandb", "progress", "skip_existing", "save_model", "checkpoint_percent"}
)


def run_settings(cfg: Any) -> dict[str, Any]:
    """A resolved `TrainLoraConfig`'s settings that decide the run's numbers (for its fingerprint)."""
    return {k: v for k, v in sorted(vars(cfg).items()) if k not in _NOT_FINGERPRINTED}


def run_fingerprint(cfg: Any, sae_sources: Sequence[str]) -> str:
    """Fingerprint of a LoRA run: model, data, settings and the SAEs' weights (`lorasae.fingerprint`)."""
    settings = run_settings(cfg) | {"sae_sources": list(sae_sources)}
    return fingerprint(cfg.model_name, cfg.dataset, settings, [weights_digest(s) for s in sae_sources])


def read_done(run: RunId, base: Path | None = None) -> dict[str, Any] | None:
    """The run's completion record, or None when the run did not finish (or the record is unreadable)."""
    path = run.done_path(base)
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (ValueError, OSError):
        return None


def write_done(
    run: RunId, fingerprint_: str, settings: dict[str, Any], outputs: dict[str, str], base: Path | None = None
) -> Path:
    """The completion record, written after every other output of the run."""
    record = {
        "fingerprint": fingerprint_,
        "settings": settings,
        "outputs": outputs,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return atomic_write_json(run.done_path(base), record)


def ce_increase(result: LoraRunResult) -> dict[str, Any]:
    """SPEC §3.4's four keys; plus `"gap_flag"` (`non_positive_gap` / `gap_within_noise`, `lorasae.gap`)
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
        "gap_se": _number(result.gap_se),  # the gap's standard error (lorasae.gap.paired_gap_se)
        "ce_improvement": _number(result.ce_improvement),
        "frac_gap_closed": _number(result.frac_gap_closed),  # empty when flagged
        "gap_flag": result.gap_flag or "",
        "minutes": _number(result.total_minutes, 4),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint_,
    }
    assert tuple(row) == RESULTS_COLUMNS
    return row


def append_result(row: dict[str, Any], base: Path | None = None) -> Path:
    return append_csv_row(results_csv(base), row)


def save_adapter(peft_model: nn.Module, path: Path) -> Path:
    """`peft_model.save_pretrained` into a temporary sibling, renamed onto `path`."""
    with atomic_dir(path) as tmp:
        peft_model.save_pretrained(str(tmp))
    return path
