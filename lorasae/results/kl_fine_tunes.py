"""The KL fine-tunes (`train_sae.py --objective kl --init_sae`) of one TopK SAE family's checkpoints, found
through the SAE run records (the fine-tune's record names its parent; the parent's record its
architecture, settings and checkpoint percentage), for the timing figure's "TopK + KL fine-tune"; and
where each lands on the figure (`kl_points`: x = SAE training time to the checkpoint + fine-tune time)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lorasae.core.paths import from_portable
from lorasae.core.records import SAE_RECORD_KIND, read_record
from lorasae.results.curves import Curve
from lorasae.results.files import resolve_root
from lorasae.store.tags import parse_sae_tag


@dataclass(frozen=True)
class KlFineTune:
    """One fine-tune: its parent's checkpoint percentage (the final SAE: 100), its own curve (minutes
    from 0; the first point is the parent spliced, the last the fine-tuned SAE) and its token budget; its
    curve's files are the two records read: the fine-tune's (the curve) and its parent's (the percentage)."""

    pct: float
    curve: Curve
    tokens: int


def _sae_record(folder: Path):
    try:
        record = read_record(folder)
    except (OSError, ValueError):
        return None
    return record if record is not None and record.kind == SAE_RECORD_KIND else None


def find_kl_fine_tunes(
    root: str | Path | None, model: str, family_tag: str, layer: int | None
) -> list[KlFineTune]:
    """The fine-tunes of the TopK SAE family `family_tag` (e.g. `expansion_8_L0_4`) at `layer` (None: any), one per
    checkpoint percentage: of several budgets, the budget that covers the most checkpoints (then the
    largest)."""
    family = parse_sae_tag(family_tag)
    folder = resolve_root(root) / "saved_saes" / model / "normal"
    found: list[KlFineTune] = []
    pattern = f"*/model.layers.{'*' if layer is None else layer}/cfg.json"
    for cfg in sorted(folder.glob(pattern)) if folder.is_dir() else ():
        record = _sae_record(cfg.parent)
        settings = (record.get("settings") or {}) if record else {}
        init = (record.get("init_sae") or {}) if record else {}
        if record is None or settings.get("objective") != "kl" or record.get("checkpoint_pct") is not None:
            continue
        parent = _sae_record(from_portable(init.get("source", ""))) if init.get("source") else None
        parent_settings = (parent.get("settings") or {}) if parent else {}
        if parent is None or parent.get("architecture") != "topk" or layer not in (None, parent.get("layer")):
            continue
        if (parent_settings.get("expansion_factor"), parent_settings.get("k")) != (
            family.expansion,
            family.l0,
        ):
            continue
        result = record.extra.get("result") or {}
        if not result.get("minutes") or not result.get("val_loss"):
            continue
        pct = parent.get("checkpoint_pct")
        curve = Curve.from_lists(result["minutes"], result["val_loss"], (record.path, parent.path))
        found.append(
            KlFineTune(
                float(pct if pct is not None else 100), curve, int(settings.get("num_train_tokens", 0))
            )
        )
    if not found:
        return []
    budgets = Counter(t.tokens for t in found)
    budget = max(budgets, key=lambda b: (budgets[b], b))
    by_pct = {t.pct: t for t in found if t.tokens == budget}
    return [by_pct[p] for p in sorted(by_pct)]


def kl_points(topk: Curve, tunes: list[KlFineTune]) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(pct, x, CE) of each fine-tune on the timing figure: x = the TopK SAE's training minutes to the
    checkpoint + the fine-tune's own minutes."""
    return [(t.pct, topk.minutes_at_progress(t.pct / 100.0) + t.curve.minutes, t.curve.ce) for t in tunes]
