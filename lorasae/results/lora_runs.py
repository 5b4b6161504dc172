"""The LoRA runs of a model (`load_lora_runs`): one `LoraRun` per `peft_<a>-<b>_rank_<r>_..._<N>k.json`
triple under `data/TopK/{val_loss,time,CE_increase}/<model>/<sae_tag>/`, with its validation curve and
CE summary."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from lorasae.core.atomic import read_output_json
from lorasae.core.paths import sanitize
from lorasae.core.records import RECORD_SUFFIX
from lorasae.results.curves import Curve, _paired_curve
from lorasae.results.files import MissingResultsError, _available, resolve_root, topk_dir
from lorasae.results.names import SaeTag, parse_lora_filename, parse_sae_tag

RERUN = "train_lora.py with this run's flags and --overwrite"


@dataclass
class LoraRun:
    """One LoRA run on one SAE: its parsed name, its validation curve and its CE summary."""

    model: str
    sae: SaeTag
    first_layer: int
    last_layer: int
    rank: int
    num_examples: int
    curve: Curve | None = None
    summary: dict[str, float] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    variant: str = ""
    """The run's settings off their defaults, as its file names carry them (empty: the paper's)."""

    @property
    def sae_tag(self) -> str:
        return self.sae.tag

    @property
    def checkpoint_pct(self) -> float | None:
        return self.sae.checkpoint_pct

    @property
    def lora_layers(self) -> str:
        return f"{self.first_layer}-{self.last_layer}"

    @property
    def config(self) -> tuple:
        """What identifies a run across the checkpoints of one SAE: (SAE base tag, layers, rank, N), and
        its settings variant when it has one."""
        base = (self.sae.base, self.lora_layers, self.rank, self.num_examples)
        return (*base, self.variant) if self.variant else base

    def _summary(self, key: str) -> float | None:
        value = (self.summary or {}).get(key)
        return float(value) if value is not None else None

    @property
    def L_base(self) -> float | None:
        return self._summary("base")

    @property
    def L_SAE(self) -> float | None:
        value = self._summary("initial")
        return value if value is not None else (float(self.curve.ce[0]) if self.curve else None)

    @property
    def L_LoRA(self) -> float | None:
        value = self._summary("converged")
        return value if value is not None else (float(self.curve.ce[-1]) if self.curve else None)


def list_models(root: str | Path | None = None) -> list[str]:
    """Model folders that have any `data/TopK/val_loss/<model>` output."""
    return _available(resolve_root(root) / "data" / "TopK" / "val_loss")


def load_lora_runs(root: str | Path | None, model: str) -> list[LoraRun]:
    """Every LoRA run of `model` found under `data/TopK/{val_loss,time,CE_increase}/<model>/<sae_tag>/`.

    A run needs at least its val_loss or CE_increase file; its `curve` is None unless both the val_loss
    and time files exist. Files whose names do not parse are skipped with a warning. Sorted by
    (SAE base tag, checkpoint pct (final last), layers, rank, N).
    """
    found: dict[tuple[str, int, int, int, int, str], dict[str, Path]] = {}
    for quantity in ("val_loss", "time", "CE_increase"):
        base = topk_dir(root, quantity, model)
        if not base.is_dir():
            continue
        for tag_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for path in sorted(tag_dir.glob("*.json")):
                if path.name.endswith(RECORD_SUFFIX):  # a run record (lorasae.core.records), not a result
                    continue
                parsed = parse_lora_filename(path.name)
                if parsed is None or parsed.quantity != quantity:
                    warnings.warn(f"skipping unrecognised LoRA output file {path}", stacklevel=2)
                    continue
                key = (
                    tag_dir.name,
                    parsed.first_layer,
                    parsed.last_layer,
                    parsed.rank,
                    parsed.num_examples,
                    parsed.variant,
                )
                found.setdefault(key, {})[quantity] = path
    if not found:
        where = resolve_root(root) / "data" / "TopK"
        raise MissingResultsError(
            f"No LoRA results for model {model!r} under {where}/{{val_loss,CE_increase}}/{sanitize(model)}/. "
            f"Models with outputs: {list_models(root) or 'none'}. They are written by `python train_lora.py`."
        )
    runs = []
    for (tag, a, b, rank, n, variant), files in found.items():
        if "val_loss" not in files and "CE_increase" not in files:
            continue
        curve = None
        if "val_loss" in files and "time" in files:
            ce, minutes = read_output_json(files["val_loss"], RERUN), read_output_json(files["time"], RERUN)
            curve = _paired_curve(minutes, ce, str(files["val_loss"]), (files["val_loss"], files["time"]))
        summary = read_output_json(files["CE_increase"], RERUN) if "CE_increase" in files else None
        runs.append(LoraRun(model, parse_sae_tag(tag), a, b, rank, n, curve, summary, files, variant))

    def order(r: LoraRun) -> tuple:
        pct = r.checkpoint_pct if r.checkpoint_pct is not None else math.inf
        return (r.sae.base, pct, r.first_layer, r.last_layer, r.rank, r.num_examples, r.variant)

    return sorted(runs, key=order)
