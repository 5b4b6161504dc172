"""Run a sweep: print the plan, train each LoRA run that has no outputs yet (through train_lora.py's own
pipeline, so the outputs are the usual ones), record which SAEs each sweep used, then draw the figures
and print the table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from lorasae.core import paths
from lorasae.core.atomic import atomic_write_json
from lorasae.core.cli import parse
from lorasae.core.errors import main_guard
from lorasae.lora.adapters import format_layers
from lorasae.model.defaults import default_sae_layer
from lorasae.model.load import model_key
from lorasae.store import external_run
from lorasae.sweep.catalog import Catalog, SaeEntry, load_catalog
from lorasae.sweep.config import MANIFEST_NOT_IDENTITY, SweepConfig, sweep_variant
from lorasae.sweep.plan import Plan, PlannedRun, build_plan, shard


def sae_tag(entry: SaeEntry, n_layers: int) -> str:
    """The tag train_lora.py gives this SAE's outputs."""
    return external_run([entry.source], [entry.layer]).tag([entry.layer], default_sae_layer(n_layers))


def lora_plan(cfg: SweepConfig, run: PlannedRun):
    """train_lora.py's plan of one sweep run (`lorasae.lora.run.PlannedRun`: names, identity, state), or
    None while the model has no LoRA results at all (then every run is new; nothing else is read)."""
    from lorasae.lora.plan import plan_runs

    if not (
        paths.root() / "data" / "TopK" / "CE_increase" / paths.sanitize(model_key(run.sae.model))
    ).is_dir():
        return None
    (planned,) = plan_runs(lora_config(cfg, run), preflight=False)
    return planned


def status(cfg: SweepConfig, run: PlannedRun) -> str:
    """train_lora.py's state of the run (`lorasae.store.lora_identity.run_state`, the one "done" rule): done,
    incomplete, damaged, different, or empty for a new run."""
    planned = lora_plan(cfg, run)
    state = planned.status() if planned is not None else "new"
    return "" if state == "new" else state


def is_done(cfg: SweepConfig, run: PlannedRun) -> bool:
    """Done by train_lora.py's rule: its run record (written last) matches this run's identity."""
    return status(cfg, run) == "done"


def plan_table(runs: Sequence[PlannedRun], cfg: SweepConfig) -> str:
    rows = [
        [
            i,
            run.sae.model,
            run.sae.source,
            run.sae.layer,
            run.sae.width,
            f"{run.sae.l0:g}",
            run.rank,
            format_layers(run.lora_layer_indices()),
            ",".join(run.axes),
            status(cfg, run),
        ]
        for i, run in enumerate(runs)
    ]
    headers = ["#", "model", "SAE", "layer", "width", "L0", "rank", "LoRA layers", "sweeps", "status"]
    return tabulate(rows, headers=headers)


def write_manifest(plan: Plan, cfg: SweepConfig, catalogs: dict[str, Catalog]) -> Path:
    """`data/sweeps/<model>[__<variant>].json` (`variant`: `sweep_variant`, its --sweep_name else its settings
    off sweep.py's defaults, so a sweep with other settings writes its own): the SAE tags of each sweep, which the figures select by;
    then its run record (the model and its weights digest, the variant, the sweep's settings and the
    manifest itself). Returns its path."""
    from lorasae.core.records import model_weights_digest, write_record
    from lorasae.store.lora_identity import local_model

    main = model_key(cfg.model_name)

    def tag(e: SaeEntry) -> str:
        return sae_tag(e, catalogs[e.model].n_layers)

    manifest = {
        "model": main,
        "catalog": cfg.catalog,
        "num_examples": cfg.num_train_examples,
        "lora_layers": cfg.LoRA_layers,
        "axes": {
            axis: [tag(e) for e in entries]
            for axis, entries in plan.axis_saes.items()
            if axis != "model_size"
        },
        "models": [model_key(e.model) for e in plan.axis_saes.get("model_size", [])] or None,
        "model_size": {model_key(e.model): tag(e) for e in plan.axis_saes.get("model_size", [])} or None,
    }
    variant = sweep_variant(cfg)
    path = paths.sweep_manifest(main, variant=variant)
    settings = {k: v for k, v in sorted(vars(cfg).items()) if k not in MANIFEST_NOT_IDENTITY}
    if unchanged_manifest(path, manifest, settings):
        return path  # the same sweep's rerun: the manifest and its record stay as they are
    atomic_write_json(path, manifest)
    model_path = local_model(cfg.model_name)
    identity = {
        "model": main,
        "model_weights_digest": model_weights_digest(model_path),
        "variant": variant,
        "settings": settings,
        "manifest": manifest,
    }
    write_record(path, "sweep_manifest", identity)
    return path


def unchanged_manifest(path: Path, manifest: dict, settings: dict | None = None) -> bool:
    """True when `path` holds exactly `manifest` and has its run record, which names `settings` when given
    (an all-done rerun of the sweep; a sweep named by `--sweep_name` with other settings rewrites the record
    even when its SAEs are the same)."""
    from lorasae.core.atomic import read_output_json
    from lorasae.core.records import read_record

    record = read_record(path) if path.is_file() else None
    if record is None:
        return False
    if settings is not None and record.get("settings") != json.loads(json.dumps(settings)):
        return False
    return read_output_json(path) == json.loads(json.dumps(manifest))


def lora_config(cfg: SweepConfig, run: PlannedRun):
    """train_lora.py's config for one planned run: the sweep's common flags and LoRA hyperparameters as
    they are, plus the run's SAE, layers and rank."""
    from dataclasses import fields

    from lorasae.core.cli import CommonArgs
    from lorasae.lora.config import LoraHyperparams, TrainLoraConfig

    shared = {f.name: getattr(cfg, f.name) for cls in (CommonArgs, LoraHyperparams) for f in fields(cls)}
    shared.update(model=run.sae.model, model_type=cfg.model_type)
    return TrainLoraConfig(
        **shared,
        sae=[run.sae.source],
        sae_layer=str(run.sae.layer),
        LoRA_layers=run.lora_layers,
        rank=run.rank,
    )


def plan_sweep(cfg: SweepConfig) -> tuple[Plan, dict[str, Catalog]]:
    """The sweep's plan and the SAE catalogs it was built from (nothing is loaded or trained)."""
    catalogs: dict[str, Catalog] = {}

    def catalog_for(model: str) -> Catalog:
        if model not in catalogs:
            catalogs[model] = load_catalog(cfg.catalog, model)
        return catalogs[model]

    return build_plan(cfg, catalog_for), catalogs


def pending_runs(cfg: SweepConfig, plan: Plan) -> list[PlannedRun]:
    """This shard's runs that are not done (all of them with --overwrite)."""
    index, count = cfg.shard_index()
    return [run for run in shard(plan.runs, index, count) if cfg.overwrite or not is_done(cfg, run)]


def main(cfg: SweepConfig) -> Plan:
    """Plan, run this shard's runs that are not done yet, write the manifest, draw the figures."""
    from lorasae.core.runtime import setup_environment
    from lorasae.lora.run import main_many as train_lora_many

    setup_environment(wandb=cfg.wandb)
    plan, catalogs = plan_sweep(cfg)
    index, count = cfg.shard_index()
    mine = shard(plan.runs, index, count)
    print(plan_table(plan.runs, cfg))
    for note in plan.notes:
        print(f"note: {note}")
    todo = pending_runs(cfg, plan)
    print(
        f"{len(plan.runs)} runs planned; shard {index}/{count}: {len(mine)} runs, {len(mine) - len(todo)} "
        f"done already, {len(todo)} to train ({cfg.num_train_examples:,} sequences each)."
    )
    if cfg.dry_run:
        return plan
    write_manifest(plan, cfg, catalogs)
    # runs on one model after another, so consecutive runs share the loaded model and data
    todo.sort(key=lambda run: cfg.models.index(run.sae.model) if run.sae.model in cfg.models else -1)
    if todo:
        from lorasae.model.forward_cache import reused_forwards

        with reused_forwards():  # the sweep's runs share the original model's targets (no time is read)
            train_lora_many([lora_config(cfg, run) for run in todo])
    if cfg.figures:
        figures(cfg)
    return plan


def figures(cfg: SweepConfig) -> None:
    """Every figure of the sweep's model; those drawn from its manifest (scaling, model size, one layer at a
    time) carry the sweep's variant in their names, so a sweep with other settings never redraws them."""
    from lorasae.plotting import plot_all
    from lorasae.results.summary import print_results_table

    model = model_key(cfg.model_name)
    for name, files in plot_all(None, model, sweep_variant=sweep_variant(cfg)).items():
        for file in files:
            if file.suffix == ".png":
                print(f"  {name}: {file}")
    print_results_table(model)


@main_guard
def cli(argv: list[str]) -> None:
    """sweep.py's command line (also `python -m lorasae.sweep`) behind the error boundary (`lorasae.core.errors`)."""
    main(parse(SweepConfig, argv))
