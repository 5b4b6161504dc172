"""Run the scale study: each model's setup (SAE, steering latent, benchmark accuracy of the base model with
and without the SAE), every point (LoRA run, its gap closed, benchmark accuracy of the LoRA model with and
without the SAE, steering effect), the speed question, then the table and the figures.

Every result is one JSON with a run record under `data/scale_study/` (models/, points/, speed.json); a
result whose record matches what would be measured is reused, so an interrupted study resumes where it
stopped and a finished one only redraws."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lorasae.core import paths
from lorasae.core.atomic import atomic_write_json, read_output_json
from lorasae.core.records import model_weights_digest, same_run, write_record
from lorasae.scale.config import Point, ScaleStudyConfig, plan_points, unique_points
from lorasae.scale.measure import ModelSetup, model_setup, steering_sets

RECORD_KIND = "scale_study"


def study_dir() -> Path:
    """`data/scale_study/` under the project root."""
    return paths.root() / "data" / "scale_study"


def cached(path: Path, identity: dict[str, Any], measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`path`'s result when its record matches `identity` (resumed: nothing runs), else `measure()` written
    to `path` with its record (written last)."""
    if path.is_file() and same_run(path, identity):
        print(f"  reused {path.relative_to(paths.root())}")
        return read_output_json(path)
    atomic_write_json(path, measure())
    write_record(path, RECORD_KIND, identity)
    return read_output_json(path)  # as a rerun reads it


def model_identity(cfg: ScaleStudyConfig, setup: ModelSetup) -> dict[str, Any]:
    """What decides a model's own measurements: the model's and the SAE's weights and the eval settings."""
    from lorasae.model.load import resolve_model_name

    return {
        "what": "model",
        "model": setup.key,
        "model_weights": model_weights_digest(resolve_model_name(setup.name)),
        "sae": setup.sae_source,
        "sae_weights": model_weights_digest(setup.sae_source),
        "benchmark_limit": cfg.benchmark_limit,
        "benchmark_tasks": cfg.benchmark_tasks,
        "steering_positives": cfg.steering_positives,
    }


def point_identity(cfg: ScaleStudyConfig, setup: ModelSetup, point: Point) -> dict[str, Any]:
    """A point's: its model's identity, the LoRA run's settings and the steering settings."""
    return model_identity(cfg, setup) | {
        "what": "point",
        "point": dataclasses.asdict(point),
        "lora_layers": cfg.lora_layers,
        "steering_alpha": cfg.steering_alpha,
        "steering_negatives": cfg.steering_negatives,
    }


def measure_model(cfg: ScaleStudyConfig, setup: ModelSetup) -> dict[str, Any]:
    """The steering latent (chosen on the base model, as the steering eval does) and the benchmark
    accuracy of the base model without and with the SAE."""
    from lorasae.steering.context import SteeringContext
    from lorasae.steering.latent import choose_latent
    from lorasae.store import external_ref, load_bundle

    bundle = load_bundle(setup.name, [external_ref(setup.sae_source, setup.layer)], device=cfg.device)
    ctx = SteeringContext(
        bundle.model, bundle.tokenizer, bundle.sae, setup.layer, setup.name, setup.sae_source
    )
    latent = choose_latent(ctx).latent
    from lorasae.scale.measure import benchmark_accuracy

    saes = {setup.layer: bundle.sae}
    return {
        "model": setup.key,
        "d_model": setup.d_model,
        "n_params": sum(p.numel() for p in bundle.model.parameters()),
        "latent": latent,
        "world_seed": ctx.world_seed,
        "bench_base": benchmark_accuracy(
            bundle.model, bundle.tokenizer, setup.name, None, cfg.benchmark_limit, cfg.benchmark_tasks
        ),
        "bench_base_sae": benchmark_accuracy(
            bundle.model, bundle.tokenizer, setup.name, saes, cfg.benchmark_limit, cfg.benchmark_tasks
        ),
    }


def measure_point(cfg: ScaleStudyConfig, setup: ModelSetup, model: dict, point: Point) -> dict[str, Any]:
    """Train the point's LoRA, then with its adapter: benchmarks without and with the SAE, steering."""
    from lorasae.scale.measure import benchmark_accuracy, steering_effect, train_point
    from lorasae.steering.context import SteeringContext
    from lorasae.store import external_ref, load_bundle

    numbers, adapter = train_point(cfg, setup, point)
    bundle = load_bundle(
        setup.name, [external_ref(setup.sae_source, setup.layer)], adapter=adapter, device=cfg.device
    )
    saes = {setup.layer: bundle.sae}
    ctx = SteeringContext(
        bundle.model, bundle.tokenizer, bundle.sae, setup.layer, setup.name, setup.sae_source, adapter,
        latent=int(model["latent"]),
    )  # fmt: skip
    sets = steering_sets(cfg, int(model["world_seed"]))
    result = {
        "point": dataclasses.asdict(point),
        "model": setup.key,
        "d_model": setup.d_model,
        "rank_ratio": point.rank / setup.d_model,
        "adapter": paths.portable(adapter),
        **numbers,
        "bench_lora": benchmark_accuracy(
            bundle.model, bundle.tokenizer, setup.name, None, cfg.benchmark_limit, cfg.benchmark_tasks
        ),
        "bench_lora_sae": benchmark_accuracy(
            bundle.model, bundle.tokenizer, setup.name, saes, cfg.benchmark_limit, cfg.benchmark_tasks
        ),
        "steering": steering_effect(ctx, sets, cfg.steering_alpha),
    }
    del bundle, ctx
    gc.collect()
    return result


def measure_speed(cfg: ScaleStudyConfig, setups: dict[str, ModelSetup]) -> dict[str, Any]:
    """Predicted and measured e2e / TopK per-token cost at each SAE layer of each model."""
    from lorasae.model.load import load_model
    from lorasae.scale.measure import SAE_EXPANSION
    from lorasae.scale.speed import dims_of, measured_costs, predicted_costs

    rows = []
    for setup in setups.values():
        model, _ = load_model(setup.name, cfg.device)
        layers = cfg.speed_layers if cfg.speed_layers is not None else range(setup.n_layers)
        for layer in layers:
            if not 0 <= layer < setup.n_layers:
                continue
            ctx = 128
            predicted = predicted_costs(dims_of(model, ctx), layer, SAE_EXPANSION * setup.d_model, setup.k)
            measured = measured_costs(model, layer, setup.k, SAE_EXPANSION, cfg.speed_steps, ctx=ctx)
            rows.append({"model": setup.key, "layer": layer, "predicted": predicted, "measured": measured})
        del model
        gc.collect()
    return {"rows": rows}


def run_study(cfg: ScaleStudyConfig) -> dict[str, Any]:
    """Everything the study measures (resumed from its files), then the table and figures."""
    from lorasae.core.runtime import setup_environment

    setup_environment(wandb=False)
    cfg.apply_quick()
    out = study_dir()
    setups = {m: model_setup(cfg, m) for m in cfg.models}
    plan = plan_points(cfg, {m: s.d_model for m, s in setups.items()})
    models = {}
    files: dict[str, Any] = {"models": {}, "points": {}, "speed": out / "speed.json"}  # for the figures
    for name, setup in setups.items():
        files["models"][name] = out / "models" / f"{paths.sanitize(setup.key)}.json"
        models[name] = cached(
            files["models"][name], model_identity(cfg, setup), lambda setup=setup: measure_model(cfg, setup)
        )
    points = {}
    todo = unique_points(plan)
    for i, point in enumerate(todo, 1):
        setup = setups[point.model]
        print(f"[scale study {i}/{len(todo)}] {point.key}", flush=True)
        files["points"][point] = out / "points" / f"{point.key}.json"
        points[point] = cached(
            files["points"][point],
            point_identity(cfg, setup, point),
            lambda setup=setup, point=point: measure_point(cfg, setup, models[point.model], point),
        )
    speed_identity = {
        "what": "speed",
        "models": {s.key: model_weights_digest(s.sae_source) for s in setups.values()},
        "layers": cfg.speed_layers,
        "steps": cfg.speed_steps,
        "clock": "process_time",
    }
    speed = cached(files["speed"], speed_identity, lambda: measure_speed(cfg, setups))
    results = {"plan": plan, "models": models, "points": points, "speed": speed, "files": files}
    if cfg.figures:
        from lorasae.scale.report import write_report

        write_report(results, cfg)
    return results
