"""Families of our saved SAEs, by architecture, as their run records say (the store's `find_sae` and
`our_sae_runs` choose among them): a family is one training run's final SAE and its checkpoints, known by
its expansion factor, where k sets its L0 its k, and the variant its record names (the weight-affecting
settings off train_sae.py's defaults, `lorasae.train.sae_names`; '' for a default run); `--architecture` picks the architecture (train_sae.py's
flag, read from each SAE's record or cfg.json, never from its folder name)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasae.store.sae_records import sae_record


def check_architecture(name: str) -> None:
    """Refuse (one line) an `--architecture` that is not in the registry (`lorasae.sae.registry`)."""
    from lorasae.sae.registry import ARCHITECTURES

    if name not in ARCHITECTURES:
        raise ValueError(
            f"--architecture {name!r} is not an SAE architecture: use one of {', '.join(ARCHITECTURES)}."
        )


def is_kl_fine_tune(record: Any) -> bool:
    """Whether a run record is a `train_sae.py --objective kl` fine-tune of another SAE."""
    return (record.get("settings") or {}).get("objective") == "kl"


@dataclass(frozen=True)
class Family:
    """One family of our SAEs (a training run's final SAE and its checkpoints): its expansion factor,
    its k where k sets its L0 (None: a threshold/penalty does, JumpReLU and ReLU) and, for messages, its
    name (the final SAE's folder name without a checkpoint suffix)."""

    expansion: int
    k: int | None
    settings: str  # without k: every recorded setting (two coefficients are two families)
    name: str
    variant: str = ""  # its record's name variant ('': trained with the naming defaults, a plain name)

    @property
    def plain(self) -> bool:
        """Whether the family was trained with train_sae.py's naming defaults (its record says so)."""
        return not self.variant


def fixed_k(architecture: str, settings: dict) -> bool:
    """Whether `k` sets this dictionary's sparsity (the registry's `sparsity` of its settings)."""
    from lorasae.sae.registry import ARCHITECTURES

    return ARCHITECTURES[architecture].sparsity(settings.get("sae_kwargs") or {}) == "topk"


def families_in(folder: Path, layers: Sequence[int], architecture: str = "topk") -> dict[Family, dict]:
    """{family: {pct or None: tag folder}} of our SAEs of `architecture` under `folder`
    (`saved_saes/<model>/<kind>`) that exist at every one of `layers`, as their run records say
    (`sae_records.sae_record`; a folder without one gets a record inferred from its cfg.json)."""
    check_architecture(architecture)
    families: dict[Family, dict[int | None, Path]] = {}
    for tag_dir in sorted(folder.iterdir()) if folder.is_dir() else ():
        if not all((tag_dir / f"model.layers.{x}" / "cfg.json").exists() for x in layers):
            continue
        records = [sae_record(tag_dir / f"model.layers.{x}") for x in layers]
        if any(r.get("architecture") != architecture or r.get("layer") != x for r, x in zip(records, layers)):
            continue
        if any(is_kl_fine_tune(r) for r in records):  # `<tag>__kl-ft`: its own SAE, given with --sae
            continue
        settings = records[0].get("settings") or {}
        expansion, k = settings.get("expansion_factor"), settings.get("k")
        if not isinstance(expansion, int):
            continue
        if not fixed_k(architecture, settings):
            k = None
        elif not isinstance(k, int):
            continue
        # k names a TopK-like family (its folder holds the run); a threshold/penalty family by its settings;
        # two runs of one (expansion, k) differing in weight-affecting settings by their records' variant
        variant = str(records[0].extra.get("variant") or "")
        same = "" if k is not None else json.dumps(settings, sort_keys=True, default=str)
        key = (expansion, k, same, variant)
        found = next((f for f in families if (f.expansion, f.k, f.settings, f.variant) == key), None)
        if found is None:
            found = Family(expansion, k, same, re.sub(r"-\d+pct$", "", tag_dir.name), variant)
            families[found] = {}
        families[found][records[0].get("checkpoint_pct")] = tag_dir
    return families


def plain_choice(families: dict[Family, dict]) -> tuple[Family | None, list[str]] | None:
    """Of several families that differ only in their variants (their records' weight-affecting settings):
    the one trained with train_sae.py's defaults (None when none was) and the names of the others; None
    when they differ otherwise (expansion, k, recorded settings), for the caller to refuse."""
    if len({(f.expansion, f.k, f.settings) for f in families}) > 1:
        return None
    plain = next((f for f in families if f.plain), None)
    return plain, sorted(f.name for f in families if f is not plain)


__all__ = ["Family", "check_architecture", "families_in", "fixed_k", "is_kl_fine_tune", "plain_choice"]
