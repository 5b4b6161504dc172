"""`data/results.csv`, one row per LoRA run, as a typed DataFrame with parsed layer columns
(`load_results_csv`); a model's rows (`select_model`) and its size read off its name
(`model_size_billions`)."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lorasae.core.atomic import read_csv_rows
from lorasae.core.gap import gap_flags
from lorasae.core.paths import results_csv, sanitize
from lorasae.core.results_columns import DERIVED_COLUMNS, NUMERIC_COLUMNS, RESULTS_COLUMNS
from lorasae.results.files import MissingResultsError, resolve_root
from lorasae.results.names import parse_layers

# Model keys of `lorasae.model.load.MODEL_REGISTRY` whose names do not say their size (billions, as the
# paper labels them).
REGISTRY_SIZES_B = {"gemma": 2.0, "llama": 1.0}


def load_results_csv(root: str | Path | None = None) -> pd.DataFrame:
    """`data/results.csv` as a DataFrame: numeric columns as floats (NaN when empty), layer specs kept as
    strings, plus parsed columns `sae_layer` (first SAE layer), `n_sae_layers`, `lora_first`,
    `lora_last`, `n_lora_layers`, `lora_kind` (`single` | `after` | `all` | `other`), `model_dir`
    (the model as a folder name) and `model_size_b` (billions of parameters, from the name if it says).
    `gap_flag` is `non_positive_gap` (and `frac_gap_closed` NaN) where L_SAE − L_base ≤ 0,
    `gap_within_noise` where the gap is below 2 standard errors (`gap_se`, NaN in older files), "" elsewhere."""
    path = results_csv(resolve_root(root))
    if not path.is_file():
        raise MissingResultsError(
            f"No results table at {path}. `python train_lora.py` appends a row per run."
        )
    read_csv_rows(path)  # a damaged file: an error naming it and the line, not pandas' tokenizer error
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in RESULTS_COLUMNS if c not in df.columns and c not in DERIVED_COLUMNS]
    if missing:
        warnings.warn(f"{path} lacks columns {missing}; treating them as empty", stacklevel=2)
        for c in missing:
            df[c] = ""
    for c in DERIVED_COLUMNS - set(df.columns):  # new or recomputed columns an older file lacks
        df[c] = ""
    for c in NUMERIC_COLUMNS:
        df[c] = pd.to_numeric(df[c].replace("", np.nan), errors="coerce").astype(float)
    # the gap rule of `lorasae.core.gap`, applied again on reading: rows written before it existed (or by hand)
    # get their flag, and a flagged row has no fraction, whatever its cell says
    df["gap_flag"] = gap_flags(df["L_base"], df["L_SAE"], df["gap_se"])
    df.loc[df["gap_flag"] != "", "frac_gap_closed"] = np.nan
    sae = df["sae_layers"].map(parse_layers)
    lora = df["lora_layers"].map(parse_layers)
    df["sae_layer"] = [float(s[0]) if s else np.nan for s in sae]
    df["n_sae_layers"] = [len(s) if s else 0 for s in sae]
    df["lora_first"] = [float(x[0]) if x else np.nan for x in lora]
    df["lora_last"] = [float(x[-1]) if x else np.nan for x in lora]
    df["n_lora_layers"] = [len(x) if x else 0 for x in lora]
    df["lora_kind"] = [_lora_kind(s, x) for s, x in zip(sae, lora)]
    df["model_dir"] = df["model"].map(sanitize)
    df["model_size_b"] = df["model"].map(model_size_billions).astype(float)
    df["timestamp_parsed"] = pd.to_datetime(df["timestamp"], errors="coerce", utc=True, format="mixed")
    return df


def _lora_kind(sae: list[int] | None, lora: list[int] | None) -> str:
    if not lora:
        return "other"
    if len(lora) == 1:
        return "single"
    if lora[0] == 0:
        return "all"
    if sae and lora[0] == max(sae) + 1:
        return "after"
    return "other"


def model_size_billions(name: str) -> float:
    """Parameter count in billions read off a model name (`gemma-2-2b` → 2, `Qwen2.5-0.5B` → 0.5,
    `pythia-160m` → 0.16; registry keys `gemma` → 2, `llama` → 1); NaN when the name does not say."""
    short = str(name).split("/")[-1]
    if short in REGISTRY_SIZES_B:
        return REGISTRY_SIZES_B[short]
    m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)([bBmM])(?![A-Za-z])", short)
    if not m:
        return math.nan
    value = float(m.group(1))
    return value if m.group(2).lower() == "b" else value / 1000


def select_model(df: pd.DataFrame, model: str) -> pd.DataFrame:
    """Rows of `model` (matched as given, or as its folder name)."""
    rows = df[(df["model"] == model) | (df["model_dir"] == sanitize(model))]
    if rows.empty:
        raise MissingResultsError(
            f"No rows for model {model!r} in data/results.csv; models there: {sorted(set(df['model']))}"
        )
    return rows
