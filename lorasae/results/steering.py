"""Steering results: the per-example steering Δs of a results file (`load_steering_deltas`), the files
under `eval/steering/results/` that hold them (`find_steering_results`), the one a report shows
(`pick_steering_result`) and a name per file for figures (`steering_label`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lorasae.results.files import _read_json, resolve_root


def load_steering_deltas(
    path: str | Path, combine_negatives: bool = True
) -> dict[str, dict[str, np.ndarray]]:
    """Per-example steering Δs from a JSON holding `{"base"|"lora": {set: [Δ, ...]}}`, either as the
    whole file or under a `"deltas"` key (the steering eval's `eval/steering/results/latent_<N>.json`).
    With `combine_negatives`, every set other than `positive` is pooled into `negative` (unless the
    file already has a `negative` set)."""
    path = Path(path)
    raw = _read_json(path, "steering deltas", "`python eval/steering/run_eval.py`")
    if isinstance(raw, Mapping) and isinstance(raw.get("deltas"), Mapping):
        raw = raw["deltas"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, Mapping) for v in raw.values()):
        raise ValueError(f"{path}: expected {{model: {{set: [values]}}}}, optionally under a 'deltas' key")
    out = {str(m): {str(s): np.asarray(v, dtype=float) for s, v in sets.items()} for m, sets in raw.items()}
    if combine_negatives:
        for sets in out.values():
            others = [k for k in sets if k != "positive"]
            if "negative" not in sets and others:
                sets["negative"] = np.concatenate([sets.pop(k) for k in others])
    return out


def find_steering_results(root: str | Path | None = None) -> list[Path]:
    """JSON files under `<root>/eval/steering/results/` that hold steering Δs (a `deltas` key, or the
    bare `{model: {set: [...]}}` form)."""
    folder = resolve_root(root) / "eval" / "steering" / "results"
    found = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(raw, Mapping) and (
            isinstance(raw.get("deltas"), Mapping) or (raw and set(raw) <= {"base", "lora"})
        ):
            found.append(path)
    return found


def steering_label(path: str | Path) -> str:
    """A name per steering result for its figures: `latent_<N>`, prefixed by its slot folder (SAE, adapter
    and settings) when it has one, so two results of one latent never share a figure."""
    path = Path(path)
    return path.stem if path.parent.name == "results" else f"{path.parent.name}__{path.stem}"


def pick_steering_result(model: str | None = None, root: str | Path | None = None) -> Path | None:
    """The steering result a report shows: of `model` (its `model` field; None: any), chosen among several
    by `lorasae.eval_identity.pick_result` (the default settings first, else the newest; says which)."""
    from lorasae.eval_identity import found, pick_result

    items = []
    for path in find_steering_results(root):
        raw = _read_json(path, "steering results", "`python eval/steering/run_eval.py`")
        if model is None or (isinstance(raw, Mapping) and raw.get("model") == model):
            items.append(found(path))
    chosen = pick_result(items, f"steering results{f' of {model}' if model else ''}")
    return chosen.path if chosen is not None else None
