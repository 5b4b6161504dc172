"""The paper's figures (SPEC §4.4), drawn from the output files that the trainers and evals write.

One module per figure family: `timing` (spliced CE vs training time for TopK SAE, e2e SAE and TopK +
LoRA from each checkpoint), `scaling` (CE improvement, absolute and % of the gap closed, vs SAE L0,
width, layer and model size, one line per rank), `layers` (a LoRA on one layer at a time) and
`steering` (histograms of steering Δs). Every figure function takes the output root (default
`$LORASAE_ROOT`, else the repository; see `lorasae.results`), writes `<name>.png` and `<name>.pdf` under
`out_dir` (default `<root>/plots`) and returns their paths; figures render headless (no pyplot state).
`plot_all` draws every figure the available files allow and says why it skipped the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lorasae.core.errors import CorruptFileError
from lorasae.plotting.layers import plot_single_layer_lora
from lorasae.plotting.multi_sae import multi_sae_table, plot_multi_sae
from lorasae.plotting.scaling import (
    X_VARS,
    improvement_table,
    plot_improvement_vs,
    plot_improvement_vs_model_size,
    plot_scaling_grid,
)
from lorasae.plotting.steering import plot_steering_histograms
from lorasae.plotting.timing import plot_timing
from lorasae.results import (
    MissingResultsError,
    find_steering_results,
    find_sweep_manifest,
    load_steering_deltas,
    resolve_root,
    steering_label,
)
from lorasae.results.files import read_result_file

__all__ = [
    "X_VARS",
    "find_steering_results",
    "improvement_table",
    "multi_sae_table",
    "plot_all",
    "plot_improvement_vs",
    "plot_improvement_vs_model_size",
    "plot_multi_sae",
    "plot_scaling_grid",
    "plot_single_layer_lora",
    "plot_steering_histograms",
    "plot_timing",
    "try_plot",
]


def try_plot(fn: Callable[..., list[Path]], *args, **kwargs) -> list[Path]:
    """Call a figure function; if its input files are missing or damaged, print why (which file, what to
    do) and return []."""
    try:
        return fn(*args, **kwargs)
    except (MissingResultsError, CorruptFileError) as e:
        print(f"skipped {fn.__name__}: {e}")
        return []


def plot_all(
    root: str | Path | None,
    model: str,
    out_dir: str | Path | None = None,
    *,
    sweep_variant: str | None = None,
    figure_variant: str | None = None,
) -> dict[str, list[Path]]:
    """Every figure of `model` its files allow (plus model size across all models and any steering
    deltas found); figures whose inputs are missing are skipped with a printed reason. When sweep.py
    ran for `model`, its manifest says which SAEs the scaling, model-size and one-layer figures show:
    the manifest of the settings `sweep_variant`, else `pick_result`'s (the default settings, else the
    newest, saying which). Those three figures' names carry `figure_variant`, by default the manifest's
    own variant (`<model>_scaling__<variant>.png`), so the figures of two sweeps never share a file; ''
    keeps the original names."""
    chosen = find_sweep_manifest(root, model, sweep_variant)
    if chosen is None and sweep_variant is not None:
        print(f"note: no sweep manifest of {model} with settings {sweep_variant or 'defaults'!r}")
    sweep = read_result_file(chosen.path, "sweep manifest", "sweep.py") if chosen is not None else {}
    named = figure_variant if figure_variant is not None else (chosen.variant if chosen is not None else "")
    axes = sweep.get("axes", {})
    single = axes.get("single_layer") or [None]
    out: dict[str, list[Path]] = {
        "timing": try_plot(plot_timing, root, model, out_dir=out_dir),
        "scaling": try_plot(
            plot_scaling_grid,
            root,
            model,
            sae_tags=axes or None,
            out_dir=out_dir,
            size_tags=sweep.get("model_size"),
            variant=named,
        ),
        "single_layer": try_plot(
            plot_single_layer_lora, root, model, sae_tag=single[0], out_dir=out_dir, variant=named
        ),
        "multi_sae": try_plot(plot_multi_sae, root, model, out_dir=out_dir),
        "model_size": try_plot(
            plot_improvement_vs_model_size,
            root,
            sweep.get("models"),
            sae_tags=sweep.get("model_size"),
            out_dir=out_dir,
            variant=named,
        ),
    }
    target = Path(out_dir) if out_dir is not None else resolve_root(root) / "plots"
    for path in find_steering_results(root):
        label = steering_label(path)  # one figure per result (slot and latent), never shared
        out[f"steering:{label}"] = plot_steering_histograms(
            load_steering_deltas(path), target / f"steering_{label}", title=label, inputs=[path]
        )
    return out
