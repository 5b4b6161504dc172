"""Read the training and evaluation output files (SPEC §3.4) into tidy Python structures.

Producers (`train_sae.py`, `train_lora.py`, the steering eval) write JSON curves under
`data/TopK/{val_loss,time,CE_increase}/<model>/...` and one row per LoRA run to `data/results.csv`;
this module is the only place that knows those layouts on the reading side. `load_sae_curve` gives a
`Curve` (cumulative minutes, spliced CE; point i at training progress i/(len-1)), `load_lora_runs`
gives one `LoraRun` per `peft_<a>-<b>_rank_<r>_..._<N>k.json` triple with the SAE tag, checkpoint
percentage, layers, rank and example count parsed from the names, `load_results_csv` gives a pandas
DataFrame with typed columns plus parsed layer columns, and `load_timing_data` gathers everything the
timing plot and the e2e speed-up need. Every function takes the output root folder (default
`$LORASAE_ROOT`, else the repository root) and raises `MissingResultsError` (a `FileNotFoundError`)
naming the missing path and the command that produces it.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lorasae import paths
from lorasae.paths import sanitize

SAE_KINDS = ("normal", "e2e")
RESULTS_COLUMNS = (
    "model",
    "sae_tag",
    "sae_source",
    "sae_layers",
    "lora_layers",
    "rank",
    "num_examples",
    "sae_width",
    "sae_l0",
    "checkpoint_pct",
    "L_base",
    "L_SAE",
    "L_LoRA",
    "ce_gap",
    "ce_improvement",
    "frac_gap_closed",
    "minutes",
    "timestamp",
)
_NUMERIC_COLUMNS = (
    "rank",
    "num_examples",
    "sae_width",
    "sae_l0",
    "checkpoint_pct",
    "L_base",
    "L_SAE",
    "L_LoRA",
    "ce_gap",
    "ce_improvement",
    "frac_gap_closed",
    "minutes",
)
# Model keys of `lorasae.models.MODEL_REGISTRY` whose names do not say their size (billions, as the
# paper labels them).
REGISTRY_SIZES_B = {"gemma": 2.0, "llama": 1.0}


class MissingResultsError(FileNotFoundError):
    """An output file or folder the figures need does not exist (message says which and why)."""


# --- roots and names ------------------------------------------------------------------------------


def default_root() -> Path:
    """`$LORASAE_ROOT` if set, else the repository root (see `lorasae.paths.root`)."""
    return paths.root()


def resolve_root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else default_root()


def topk_dir(root: str | Path | None, quantity: str, model: str) -> Path:
    """`<root>/data/TopK/<quantity>/<model>` (quantity: `val_loss`, `time`, `CE_increase`)."""
    return resolve_root(root) / "data" / "TopK" / quantity / sanitize(model)


def _available(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- curves ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """A validation curve: cumulative training minutes (first 0) and spliced CE (first = before training)."""

    minutes: np.ndarray
    ce: np.ndarray

    def __post_init__(self) -> None:
        if len(self.minutes) != len(self.ce):
            raise ValueError(f"curve has {len(self.minutes)} times but {len(self.ce)} CE values")
        if len(self.ce) == 0:
            raise ValueError("empty curve")

    @classmethod
    def from_lists(cls, minutes: Sequence[float], ce: Sequence[float]) -> Curve:
        return cls(np.asarray(minutes, dtype=float), np.asarray(ce, dtype=float))

    def __len__(self) -> int:
        return len(self.ce)

    @property
    def hours(self) -> np.ndarray:
        return self.minutes / 60.0

    @property
    def progress(self) -> np.ndarray:
        """Training-progress fraction of each point: i/(len-1)."""
        n = len(self.ce)
        return np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)

    def minutes_at_progress(self, fraction: float) -> float:
        """Cumulative training minutes at a progress fraction (linear interpolation between points)."""
        return float(np.interp(fraction, self.progress, self.minutes))

    def ce_at_progress(self, fraction: float) -> float:
        return float(np.interp(fraction, self.progress, self.ce))


def _read_json(path: Path, what: str, how: str) -> Any:
    if not path.is_file():
        siblings = _available(path.parent)
        hint = f" Files there: {siblings}." if siblings else f" ({path.parent} does not exist.)"
        raise MissingResultsError(f"No {what} at {path}.{hint} It is written by {how}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rerun {how} to rewrite it") from e


def _paired_curve(minutes: Sequence[float], ce: Sequence[float], where: str) -> Curve:
    if len(minutes) != len(ce):
        n = min(len(minutes), len(ce))
        warnings.warn(
            f"{where}: {len(minutes)} time points but {len(ce)} CE values; using the first {n}",
            stacklevel=3,
        )
        minutes, ce = minutes[:n], ce[:n]
    return Curve.from_lists(minutes, ce)


def load_sae_curve(root: str | Path | None, model: str, kind: str) -> Curve:
    """The SAE training curve `data/TopK/{time,val_loss}/<model>/<kind>_SAE.json` (kind: normal/e2e)."""
    if kind not in SAE_KINDS:
        raise ValueError(f"SAE kind must be one of {SAE_KINDS}, got {kind!r}")
    how = f"`python train_sae.py --model_type {model}{' --e2e' if kind == 'e2e' else ''}`"
    ce = _read_json(topk_dir(root, "val_loss", model) / f"{kind}_SAE.json", f"{kind} SAE CE curve", how)
    minutes = _read_json(topk_dir(root, "time", model) / f"{kind}_SAE.json", f"{kind} SAE time curve", how)
    return _paired_curve(minutes, ce, f"{kind} SAE curve of {model}")


# --- names ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaeTag:
    """A parsed SAE tag: `expansion_8_L0_64-30pct`, or e.g. `layer_12_width_16k_average_l0_82`."""

    tag: str
    base: str
    checkpoint_pct: float | None = None
    expansion: float | None = None
    l0: float | None = None
    width: int | None = None
    layer: int | None = None


def _num(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def _width(value: int, unit: str) -> int:
    """`16k` → 16384, `131k` → 131072, `1m` → 1048576 (Gemma Scope rounds powers of two down to
    thousands); a value that is no such rounding is taken literally (`10k` → 10000)."""
    n = value * {"": 1, "k": 1000, "m": 1000**2}[unit]
    if unit:
        pow2 = 2 ** round(math.log2(n))
        if abs(pow2 - n) <= 0.05 * n:
            return pow2
    return n


def parse_sae_tag(tag: str) -> SaeTag:
    """Parse what can be parsed from an SAE tag; unknown parts stay None."""
    base, pct = tag, None
    m = re.search(r"-(\d+(?:\.\d+)?)pct$", tag)
    if m:
        base, pct = tag[: m.start()], _num(m.group(1))
    expansion = l0 = width = layer = None
    if m := re.search(r"expansion_(\d+(?:\.\d+)?)", base):
        expansion = _num(m.group(1))
    if m := re.search(r"(?:^|_)[Ll]0_(\d+(?:\.\d+)?)", base):
        l0 = _num(m.group(1))
    if m := re.search(r"width_(\d+)([kKmM]?)", base):
        width = _width(int(m.group(1)), m.group(2).lower())
    if m := re.search(r"layer_(\d+)", base):
        layer = int(m.group(1))
    return SaeTag(tag, base, pct, expansion, l0, width, layer)


_LORA_FILE = re.compile(
    r"^peft_(?P<a>\d+)(?:-(?P<b>\d+))?_rank_(?P<rank>\d+)_(?P<q>val_losses|time|CE_increase)"
    r"_(?P<n>\d*\.?\d+)k\.json$"
)
_QUANTITY = {"val_losses": "val_loss", "time": "time", "CE_increase": "CE_increase"}


@dataclass(frozen=True)
class LoraFileName:
    quantity: str  # val_loss | time | CE_increase
    first_layer: int
    last_layer: int
    rank: int
    num_examples: int


def parse_lora_filename(name: str) -> LoraFileName | None:
    """`peft_13-25_rank_64_val_losses_15k.json` → fields; `peft_13_...` means one layer; None if no match."""
    m = _LORA_FILE.match(name)
    if not m:
        return None
    a = int(m.group("a"))
    b = int(m.group("b")) if m.group("b") is not None else a
    return LoraFileName(
        _QUANTITY[m.group("q")], a, b, int(m.group("rank")), round(float(m.group("n")) * 1000)
    )


def parse_layers(spec: Any) -> list[int] | None:
    """Layer spec of results.csv: `"1"`, `"2-3"` (inclusive range), `"1,3"`, `"1,4-6"`; None if empty."""
    if spec is None or (isinstance(spec, float) and math.isnan(spec)):
        return None
    text = str(spec).strip().strip("[]")
    if not text:
        return None
    layers: list[int] = []
    for part in re.split(r"[,\s]+", text):
        if not part:
            continue
        if m := re.fullmatch(r"(\d+)-(\d+)", part):
            layers.extend(range(int(m.group(1)), int(m.group(2)) + 1))
        elif part.lstrip("-").isdigit():
            layers.append(int(float(part)))
        else:
            raise ValueError(f"cannot parse layer spec {spec!r}")
    return sorted(set(layers))


# --- LoRA runs ------------------------------------------------------------------------------------


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
    def config(self) -> tuple[str, str, int, int]:
        """What identifies a run across the checkpoints of one SAE: (SAE base tag, layers, rank, N)."""
        return (self.sae.base, self.lora_layers, self.rank, self.num_examples)

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
    found: dict[tuple[str, int, int, int, int], dict[str, Path]] = {}
    for quantity in ("val_loss", "time", "CE_increase"):
        base = topk_dir(root, quantity, model)
        if not base.is_dir():
            continue
        for tag_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for path in sorted(tag_dir.glob("*.json")):
                parsed = parse_lora_filename(path.name)
                if parsed is None or parsed.quantity != quantity:
                    warnings.warn(f"skipping unrecognised LoRA output file {path}", stacklevel=2)
                    continue
                key = (tag_dir.name, parsed.first_layer, parsed.last_layer, parsed.rank, parsed.num_examples)
                found.setdefault(key, {})[quantity] = path
    if not found:
        where = resolve_root(root) / "data" / "TopK"
        raise MissingResultsError(
            f"No LoRA results for model {model!r} under {where}/{{val_loss,CE_increase}}/{sanitize(model)}/. "
            f"Models with outputs: {list_models(root) or 'none'}. They are written by `python train_lora.py`."
        )
    runs = []
    for (tag, a, b, rank, n), files in found.items():
        if "val_loss" not in files and "CE_increase" not in files:
            continue
        curve = None
        if "val_loss" in files and "time" in files:
            ce, minutes = json.loads(files["val_loss"].read_text()), json.loads(files["time"].read_text())
            curve = _paired_curve(minutes, ce, str(files["val_loss"]))
        summary = json.loads(files["CE_increase"].read_text()) if "CE_increase" in files else None
        runs.append(LoraRun(model, parse_sae_tag(tag), a, b, rank, n, curve, summary, files))

    def order(r: LoraRun) -> tuple:
        pct = r.checkpoint_pct if r.checkpoint_pct is not None else math.inf
        return (r.sae.base, pct, r.first_layer, r.last_layer, r.rank, r.num_examples)

    return sorted(runs, key=order)


# --- results.csv ----------------------------------------------------------------------------------


def load_results_csv(root: str | Path | None = None) -> pd.DataFrame:
    """`data/results.csv` as a DataFrame: numeric columns as floats (NaN when empty), layer specs kept as
    strings, plus parsed columns `sae_layer` (first SAE layer), `n_sae_layers`, `lora_first`,
    `lora_last`, `n_lora_layers`, `lora_kind` (`single` | `after` | `all` | `other`), `model_dir`
    (the model as a folder name) and `model_size_b` (billions of parameters, from the name if it says)."""
    path = resolve_root(root) / "data" / "results.csv"
    if not path.is_file():
        raise MissingResultsError(
            f"No results table at {path}. `python train_lora.py` appends a row per run."
        )
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in RESULTS_COLUMNS if c not in df.columns]
    if missing:
        warnings.warn(f"{path} lacks columns {missing}; treating them as empty", stacklevel=2)
        for c in missing:
            df[c] = ""
    for c in _NUMERIC_COLUMNS:
        df[c] = pd.to_numeric(df[c].replace("", np.nan), errors="coerce").astype(float)
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


# --- what the timing plot and the speed-up need ----------------------------------------------------


@dataclass
class TimingData:
    """TopK and e2e SAE curves plus the LoRA runs on each TopK checkpoint (one configuration)."""

    model: str
    topk: Curve
    e2e: Curve | None
    checkpoints: list[tuple[float, float, LoraRun]]  # (pct, SAE minutes at the checkpoint, run)
    L_base: float | None
    config: tuple[str, str, int, int]  # (SAE base tag, LoRA layers, rank, N)


def _pick(values: Sequence[Any], requested: Any, what: str, available_msg: str) -> Any:
    if requested is not None:
        if requested not in values:
            raise MissingResultsError(f"No LoRA checkpoint runs with {what}={requested!r}; {available_msg}")
        return requested
    return Counter(values).most_common(1)[0][0]


def select_checkpoint_runs(
    runs: Sequence[LoraRun],
    *,
    sae_tag: str | None = None,
    rank: int | None = None,
    lora_layers: str | Sequence[int] | None = None,
    num_examples: int | None = None,
) -> tuple[tuple[str, str, int, int], list[tuple[float, LoraRun]]]:
    """The LoRA runs on the checkpoints of one SAE with one (layers, rank, N) configuration.

    Unspecified choices default to the configuration with the most checkpoints. The final SAE (tag
    without `-<pct>pct`) counts as 100% when no explicit 100% checkpoint run exists. Returns the
    configuration and `[(pct, run)]` sorted by pct; runs without a curve are left out.
    """
    with_curve = [r for r in runs if r.curve is not None]
    configs = [r.config for r in with_curve]
    msg = f"configurations with curves (SAE, layers, rank, N): {sorted(set(configs))}"
    if not configs:
        raise MissingResultsError("No LoRA run has both a val_loss and a time curve. " + msg)
    if sae_tag is not None:
        sae_tag = parse_sae_tag(sanitize(sae_tag)).base
    if lora_layers is not None:
        layers = parse_layers(lora_layers)
        lora_layers = f"{layers[0]}-{layers[-1]}" if layers else None
    wanted = {0: sae_tag, 1: lora_layers, 2: rank, 3: num_examples}
    candidates = configs
    for i, name in ((0, "sae_tag"), (1, "lora_layers"), (2, "rank"), (3, "num_examples")):
        if wanted[i] is not None:
            _pick([c[i] for c in candidates], wanted[i], name, msg)
            candidates = [c for c in candidates if c[i] == wanted[i]]
    config = Counter(candidates).most_common(1)[0][0]
    by_pct: dict[float, LoraRun] = {}
    final = None
    for r in with_curve:
        if r.config != config:
            continue
        if r.checkpoint_pct is None:
            final = r
        else:
            by_pct[float(r.checkpoint_pct)] = r
    if final is not None and 100.0 not in by_pct:
        by_pct[100.0] = final
    return config, sorted(by_pct.items())


def load_base_ce(root: str | Path | None, model: str, runs: Sequence[LoraRun] | None = None) -> float | None:
    """The original model's CE (L_base): median of the CE_increase `base` values, else results.csv."""
    if runs is None:
        try:
            runs = load_lora_runs(root, model)
        except MissingResultsError:
            runs = []
    values = [r.L_base for r in runs if r.L_base is not None]
    if values:
        return float(np.median(values))
    try:
        df = select_model(load_results_csv(root), model)
    except MissingResultsError:
        return None
    base = df["L_base"].dropna()
    return float(base.median()) if len(base) else None


def load_timing_data(
    root: str | Path | None,
    model: str,
    *,
    sae_tag: str | None = None,
    rank: int | None = None,
    lora_layers: str | None = None,
    num_examples: int | None = None,
) -> TimingData:
    """Everything the timing plot and the speed-up need; the e2e curve may be missing (None)."""
    topk = load_sae_curve(root, model, "normal")
    try:
        e2e: Curve | None = load_sae_curve(root, model, "e2e")
    except MissingResultsError as e:
        warnings.warn(f"no e2e SAE curve: {e}", stacklevel=2)
        e2e = None
    runs = load_lora_runs(root, model)
    config, chosen = select_checkpoint_runs(
        runs, sae_tag=sae_tag, rank=rank, lora_layers=lora_layers, num_examples=num_examples
    )
    checkpoints = [(pct, topk.minutes_at_progress(pct / 100.0), run) for pct, run in chosen]
    return TimingData(model, topk, e2e, checkpoints, load_base_ce(root, model, runs), config)


# --- steering -------------------------------------------------------------------------------------


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


def load_sweep_manifest(root: str | Path | None, model: str) -> dict[str, Any] | None:
    """sweep.py's record of which SAEs each sweep of `model` used (`data/sweeps/<model>.json`), or None."""
    path = paths.sweep_manifest(model, resolve_root(root))
    if not path.is_file():
        return None
    return _read_json(path, "sweep manifest", "sweep.py")
