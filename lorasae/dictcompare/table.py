"""The comparison's table: one `Row` per dictionary (measured L0, FVU, the CEs clean / spliced / +LoRA /
+KL fine-tune / +both, the fraction of the gap each closes, each method's training time), saved as JSON
with its run record (`write_comparison`; a rerun with the same settings is `done`) and printed with
tabulate (`print_comparison`). The gap fraction is `lorasae.core.gap.gap_closed`'s (SPEC §3.3):
(L_spliced − L_after) / (L_spliced − L_clean), every CE from the LoRA runs' validation (`lorasae.model.ce`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasae.core import paths
from lorasae.core.gap import GapClosed, gap_closed
from lorasae.dictcompare.config import NOT_IDENTITY, DictionariesConfig

RECORD_KIND = "dictionary_comparison"
IDENTITY_IGNORE = NOT_IDENTITY | {"kl_checkpoints"}
"""Settings not in the table's identity or path: the model is in the path, and the checkpoints' KL
fine-tunes (the timing figure's) are runs of their own that do not change the table."""
COLUMNS = (
    "architecture", "L0", "FVU", "CE clean", "CE spliced", "CE +LoRA", "CE +KL-ft", "CE +both",
    "gap closed % LoRA", "gap closed % KL-ft", "gap closed % both",
    "SAE min", "LoRA min", "KL-ft min", "both min",
)  # fmt: skip


@dataclass(frozen=True)
class LoraNumbers:
    """One LoRA run's CEs (nats/token, on its validation chunks) and training minutes."""

    L_base: float
    L_SAE: float
    L_LoRA: float
    minutes: float


@dataclass(frozen=True)
class Row:
    """One dictionary: `lora` is LoRA on it, `both` LoRA on its KL fine-tune (whose L_SAE is the CE
    after the fine-tune alone); `kl_minutes` and `both` are None where the architecture cannot be KL
    fine-tuned (`kl_missing` says why)."""

    architecture: str
    l0: float
    fvu: float
    sae_minutes: float
    kl_minutes: float | None
    lora: LoraNumbers
    both: LoraNumbers | None
    reused: bool = False
    kl_missing: str = ""

    @property
    def ce_clean(self) -> float:
        return self.lora.L_base

    @property
    def ce_spliced(self) -> float:
        return self.lora.L_SAE

    @property
    def ce_kl(self) -> float | None:
        return self.both.L_SAE if self.both is not None else None

    def closed(self, after: float | None) -> GapClosed:
        """The fraction of this dictionary's gap (spliced vs clean) that `after` closes."""
        return gap_closed(self.ce_clean, self.ce_spliced, after)

    def values(self) -> dict[str, Any]:
        """The row by `COLUMNS` (gap fractions as percentages; None when flagged or not measured)."""

        def pct(g: GapClosed) -> float | None:
            return None if g.fraction is None else 100 * g.fraction

        both = self.both.L_LoRA if self.both is not None else None
        both_min = (
            None if self.both is None or self.kl_minutes is None else self.kl_minutes + self.both.minutes
        )
        return dict(zip(COLUMNS, (
            self.architecture, self.l0, self.fvu, self.ce_clean, self.ce_spliced, self.lora.L_LoRA, self.ce_kl,
            both, pct(self.closed(self.lora.L_LoRA)), pct(self.closed(self.ce_kl)), pct(self.closed(both)),
            self.sae_minutes, self.lora.minutes, self.kl_minutes, both_min,
        ), strict=True))  # fmt: skip


def settings(cfg: DictionariesConfig) -> dict[str, Any]:
    """The table's settings as run: `k` resolved to the matched L0 (an explicit `--k` equal to the model's
    default k is the same comparison as none)."""
    from lorasae.dictcompare.plan import matched_k

    out = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in IDENTITY_IGNORE}
    return {**out, "k": matched_k(cfg)}


def comparison_path(cfg: DictionariesConfig) -> Path:
    """`data/dictionaries/<model>/comparison[__<variant>].json`: settings off the defaults (for this model)
    name the file."""
    defaults = dataclasses.replace(DictionariesConfig(), model_type=cfg.model_type, model=cfg.model)
    variant = paths.settings_variant(settings(cfg), settings(defaults))
    from lorasae.model.load import model_key

    folder = paths.dictionaries_dir(model_key(cfg.model_name))
    return folder / f"{paths.with_variant('comparison', variant)}.json"


def identity(cfg: DictionariesConfig) -> dict[str, Any]:
    from lorasae.core.records import model_weights_digest
    from lorasae.model.load import model_key
    from lorasae.store.lora_identity import local_model

    model = cfg.model_name
    return {"model": model_key(model), "model_weights_digest": model_weights_digest(local_model(model)),
            "settings": settings(cfg)}  # fmt: skip


def done(cfg: DictionariesConfig) -> bool:
    """Whether the table of these settings exists with its record (the rerun is skipped)."""
    from lorasae.core.records import same_run

    path = comparison_path(cfg)
    return path.is_file() and same_run(path, identity(cfg))


def caption(cfg: DictionariesConfig) -> str:
    from lorasae.dictcompare.plan import kl_budget

    share = f"{cfg.kl_tokens_pct:g} %" if cfg.kl_tokens_pct is not None else "train_sae.py's default"
    return (
        f"{cfg.model_name}, layer {cfg.layer}, ×{cfg.expansion_factor}, matched L0 (k={cfg.k or 'default'}; "
        f"JumpReLU θ₀={cfg.jumprelu_init_threshold:g}, λ={cfg.l0_coefficient:g}: its measured L0 "
        f"shown). Budgets: each dictionary {cfg.sae_tokens:,} tokens; KL fine-tune {kl_budget(cfg):,} tokens "
        f"({share}, KL + {cfg.kl_mse_weight:g}·FVU); LoRA rank {cfg.rank} on every layer, "
        f"{cfg.lora_examples} sequences. CE in nats/token on the LoRA runs' validation tokens; gap closed = "
        "(CE spliced − CE after) / (CE spliced − CE clean); minutes are training time (validation excluded)."
    )


def write_comparison(cfg: DictionariesConfig, rows: list[Row], seconds: float) -> Path:
    """The table as JSON (rows by column, caption, settings), then its run record."""
    from lorasae.core.atomic import atomic_write_json
    from lorasae.core.records import write_record

    path = comparison_path(cfg)
    payload = {
        "columns": list(COLUMNS),
        "rows": [row.values() for row in rows],
        "reused_sae": [row.architecture for row in rows if row.reused],
        "not_fine_tuned": {row.architecture: row.kl_missing for row in rows if row.kl_missing},
        "caption": caption(cfg),
        "settings": settings(cfg),
        "wall_seconds": round(seconds, 1),
    }
    atomic_write_json(path, payload)
    write_record(path, RECORD_KIND, identity(cfg))
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_table(payload: dict[str, Any], fmt: str = "github") -> str:
    from tabulate import tabulate

    columns = payload["columns"]
    body = [
        [_cell(row[c]) if not c.startswith("gap") else _pct(row[c]) for c in columns]
        for row in payload["rows"]
    ]
    missing = "".join(
        f" {a}: no KL fine-tune ({why})." for a, why in payload.get("not_fine_tuned", {}).items()
    )
    return tabulate(body, headers=columns, tablefmt=fmt) + "\n\n" + payload["caption"] + missing


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def load_comparison(root: str | Path | None, model: str) -> dict[str, Any]:
    """The comparison of `model` with the default settings, else the newest (`result_choice.pick_result`)."""
    from lorasae.core.atomic import read_output_json
    from lorasae.core.records import RECORD_SUFFIX

    folder = paths.dictionaries_dir(paths.sanitize(model), Path(root) if root else None)
    default = folder / "comparison.json"
    found = (
        [default]
        if default.is_file()
        else sorted(folder.glob("comparison*.json"), key=lambda p: p.stat().st_mtime)
    )
    found = [p for p in found if not p.name.endswith(RECORD_SUFFIX)]
    if not found:
        raise FileNotFoundError(
            f"lorasae/dictcompare/table.py: no comparison in {folder}; run python eval/dictionaries/run.py"
        )
    return read_output_json(found[-1], "python eval/dictionaries/run.py")


def print_comparison(model: str, root: str | Path | None = None) -> str:
    """Print (and return) the comparison table of `model`."""
    text = format_table(load_comparison(root, model))
    print(text)
    return text
