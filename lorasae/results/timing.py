"""What the timing plot and the e2e speed-up need (`load_timing_data`): the TopK and e2e SAE curves, the
LoRA runs on the TopK checkpoints of one configuration (`select_checkpoint_runs`) and the original
model's CE (`load_base_ce`)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lorasae.core.paths import results_csv, sanitize
from lorasae.results.curves import Curve, load_sae_curve
from lorasae.results.files import MissingResultsError, resolve_root
from lorasae.results.kl_fine_tunes import KlFineTune, find_kl_fine_tunes
from lorasae.results.lora_runs import LoraRun, load_lora_runs
from lorasae.results.names import parse_layers, parse_sae_tag
from lorasae.results.table import load_results_csv, select_model


@dataclass
class TimingData:
    """TopK and e2e SAE curves plus the LoRA runs on each TopK checkpoint (one configuration)."""

    model: str
    topk: Curve
    e2e: Curve | None
    checkpoints: list[tuple[float, float, LoraRun]]  # (pct, SAE minutes at the checkpoint, run)
    L_base: float | None
    config: tuple  # (SAE base tag, LoRA layers, rank, N[, settings variant]): `LoraRun.config`
    kl_fine_tunes: list[KlFineTune] = field(default_factory=list)  # of the same TopK SAE's checkpoints
    base_files: list[Path] = field(default_factory=list)  # what L_base was read from (`base_ce_sources`)

    @property
    def inputs(self) -> list[Path]:
        """Every file the figure's numbers were read from: the SAE curves, the drawn LoRA runs' curves, the
        KL fine-tunes' records and the files of L_base (for the figure's run record)."""
        curves = [self.topk, self.e2e, *(run.curve for _, _, run in self.checkpoints)]
        curves += [t.curve for t in self.kl_fine_tunes]
        files = [f for c in curves if c is not None for f in c.files] + self.base_files
        return sorted(set(files))


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
) -> tuple[tuple, list[tuple[float, LoraRun]]]:
    """The LoRA runs on the checkpoints of one SAE with one (layers, rank, N[, settings variant])
    configuration (`LoraRun.config`).

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
    return base_ce_sources(root, model, runs)[0]


def base_ce_sources(
    root: str | Path | None, model: str, runs: Sequence[LoraRun] | None = None
) -> tuple[float | None, list[Path]]:
    """`load_base_ce`'s value and the files it came from (the CE_increase files, else results.csv)."""
    if runs is None:
        try:
            runs = load_lora_runs(root, model)
        except MissingResultsError:
            runs = []
    with_base = [r for r in runs if r.L_base is not None]
    if with_base:
        return float(np.median([r.L_base for r in with_base])), [r.files["CE_increase"] for r in with_base]
    try:
        df = select_model(load_results_csv(root), model)
    except MissingResultsError:
        return None, []
    base = df["L_base"].dropna()
    return (float(base.median()), [results_csv(resolve_root(root))]) if len(base) else (None, [])


def load_timing_data(
    root: str | Path | None,
    model: str,
    *,
    sae_tag: str | None = None,
    rank: int | None = None,
    lora_layers: str | None = None,
    num_examples: int | None = None,
) -> TimingData:
    """Everything the timing plot and the speed-up need: the curve of the TopK SAE whose checkpoints the
    chosen LoRA runs used (found through the curves' run records) and the e2e SAE's curve of the same
    tag (None, with a warning, when there is none)."""
    runs = load_lora_runs(root, model)
    config, chosen = select_checkpoint_runs(
        runs, sae_tag=sae_tag, rank=rank, lora_layers=lora_layers, num_examples=num_examples
    )
    topk = load_sae_curve(root, model, "normal", sae_tag=config[0])
    try:
        e2e: Curve | None = load_sae_curve(root, model, "e2e", sae_tag=config[0])
    except MissingResultsError as e:
        warnings.warn(f"no e2e SAE curve: {e}", stacklevel=2)
        e2e = None
    checkpoints = [(pct, topk.minutes_at_progress(pct / 100.0), run) for pct, run in chosen]
    tunes = find_kl_fine_tunes(root, model, *_family(model, config[0]))
    base, base_files = base_ce_sources(root, model, runs)
    return TimingData(model, topk, e2e, checkpoints, base, config, tunes, base_files)


def _family(model: str, run_tag: str) -> tuple[str, int | None]:
    """(the SAE family's tag, its layer) of a LoRA run's SAE tag (`layer_<L>__<tag>` off the default layer);
    the layer None (any) when the default layer would need a built-in model that is not built (reading
    results never builds a world)."""
    from lorasae.core import paths
    from lorasae.core.errors import LorasaeError
    from lorasae.model.defaults import default_sae_layer
    from lorasae.model.load import model_shape
    from lorasae.world.sizes import is_builtin_size

    tag = parse_sae_tag(run_tag)
    if tag.layer is not None:
        return run_tag.split("__", 1)[-1], tag.layer
    if is_builtin_size(model) and not (paths.tiny_model_root() / model / "world.json").is_file():
        return tag.base, None
    try:
        return tag.base, default_sae_layer(model_shape(model).n_layers)
    except (LorasaeError, OSError, ValueError):  # a hub model not cached here, a folder that is gone
        return tag.base, None
