"""Run lm-eval-harness on the base or LoRA model, with or without the SAE spliced in (SPEC §4.3): the task
manager for built-in and hub tasks, `simple_evaluate`, the results files, and `run_benchmarks`, which
evaluates the requested combinations and prints the comparison table."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lorasae.core.atomic import atomic_write_json, atomic_write_text
from lorasae.core.fingerprint import fingerprint, weights_digest
from lorasae.core.runtime import parse_device, seed_everything, setup_environment
from lorasae.evals.capabilities import consumer
from lorasae.evals.identity import done_already, eval_identity, write_eval_record
from lorasae.lmeval.comparison import comparison_table, summary_line
from lorasae.lmeval.config import BenchmarkConfig
from lorasae.lmeval.layout import builtin_tasks_dir, results_path
from lorasae.lmeval.pairing import resolve_pairing, run_slot
from lorasae.lmeval.plan import plan_run, result_variant, world_of
from lorasae.lmeval.tasks import is_builtin_task, write_builtin_tasks
from lorasae.lmeval.wrapper import benchmark_lm
from lorasae.model.load import load_model, model_shape
from lorasae.store import external_ref, load_saes


def task_manager_for(
    tasks: Sequence[str], seed: int = 0, n_docs: int | None = None, base: Path | None = None
):
    """A TaskManager that knows the built-in tasks of world `seed` (generated when asked for); lm-eval's
    own task index (~15k tasks, ~20 s to build) is only included when another task is asked for."""
    from lm_eval.tasks import TaskManager

    builtin = [name for name in tasks if is_builtin_task(name)]
    include = (
        str(write_builtin_tasks(builtin_tasks_dir(seed, n_docs, base), seed=seed, n_docs=n_docs))
        if builtin
        else None
    )
    return TaskManager(include_path=include, include_defaults=len(builtin) < len(tasks))


def _jsonable(obj: Any) -> Any:
    from lm_eval.utils import handle_non_serializable

    return json.loads(json.dumps(obj, default=handle_non_serializable))


def evaluate(
    lm: Any,
    tasks: Sequence[str],
    task_manager: Any,
    num_fewshot: int | None = None,
    limit: int | float | None = None,
    bootstrap_iters: int = 100_000,
    log_samples: bool = False,
) -> dict[str, Any]:
    """`lm_eval.simple_evaluate` on an already built LM."""
    from lm_eval import simple_evaluate

    out = simple_evaluate(
        model=lm,
        tasks=list(tasks),
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=task_manager,
        bootstrap_iters=bootstrap_iters,
        log_samples=log_samples,
    )
    if out is None:
        raise RuntimeError("lm-eval returned no results (not the main process?).")
    return out


def write_results(path: Path, out: dict[str, Any], meta: dict[str, Any]) -> Path:
    """The lm-eval results (per-task metrics, shot counts, versions) and this run's settings; with
    samples, a `<name>_samples.jsonl` beside it."""
    record = {
        key: out[key]
        for key in (
            "results",
            "groups",
            "group_subtasks",
            "n-shot",
            "versions",
            "n-samples",
            "higher_is_better",
        )
        if key in out
    }
    record["config"] = meta
    atomic_write_json(path, _jsonable(record))
    if out.get("samples"):
        lines = [
            json.dumps({"task": task, **sample}, default=str)
            for task, samples in out["samples"].items()
            for sample in _jsonable(samples)
        ]
        atomic_write_text(path.with_name(f"{path.stem}_samples.jsonl"), "\n".join(lines) + "\n")
    return path


def run_benchmarks(config: BenchmarkConfig) -> list[Path]:
    """Evaluate the requested combination (or all four with --all_four), write the results files and
    print the comparison table; returns the paths written."""
    setup_environment(wandb=config.wandb)
    seed_everything(config.seed)
    plan = plan_run(config)
    device = parse_device(config.device)
    n_layers = model_shape(plan.model_name).n_layers
    resolve_pairing(config, plan, n_layers)  # before the weights load
    slot = run_slot(config, plan, n_layers)  # the original names for the default SAE and adapter
    model, tokenizer = load_model(plan.model_name, device=device, dtype=config.model_dtype)
    for param in model.parameters():
        param.requires_grad_(False)
    refs = [external_ref(source, layer) for source, layer in plan.sae_sources]
    saes = load_saes(refs, model, device, suite=consumer("benchmarks")) if plan.needs_sae else {}
    adapter = plan.adapter
    sae_desc = ", ".join(f"{src} @ layer {layer}" for layer, (src, _) in zip(saes, plan.sae_sources))
    print(
        f"[benchmarks] {plan.model_key}: tasks {', '.join(plan.tasks)}"
        + (f"; SAE {sae_desc}" if saes else "")
        + (f"; adapter {adapter}" if adapter else "")
    )

    seed, n_docs = world_of(plan.model_name) if any(map(is_builtin_task, plan.tasks)) else (0, None)
    task_manager = task_manager_for(plan.tasks, seed, n_docs)
    batch_size = config.batch
    variant = result_variant(config, plan.tasks, plan.model_name)
    written: list[Path] = []
    peft_model = None
    for combo in plan.combinations:
        path = results_path(plan.model_key, combo, variant=variant, slot=slot)
        settings = {
            "model_type": combo.model_type, "sae": combo.sae, "tasks": plan.tasks,
            "num_fewshot": config.num_fewshot, "limit": config.limit_value, "max_length": config.max_length,
            "dtype": config.model_dtype, "bootstrap_iters": config.bootstrap_iters,
        }  # fmt: skip
        sources = [src for src, _ in plan.sae_sources] if combo.sae else []
        identity = eval_identity(plan.model_name, sources, adapter if combo.peft else None, settings, variant)
        if done_already(f"benchmarks {combo.label}", path, identity, config.overwrite):
            continue
        if combo.peft and peft_model is None:
            from lorasae.model.adapters import load_peft_model

            assert adapter is not None
            peft_model = load_peft_model(model, adapter)  # unmerged: LoRA runs beside the frozen weights
            peft_model.eval()
        target = peft_model if combo.peft else model
        started = time.perf_counter()
        with benchmark_lm(
            target,
            tokenizer,
            saes=saes if combo.sae else None,
            batch_size=batch_size,
            max_length=config.max_length,
        ) as lm:
            out = evaluate(
                lm,
                plan.tasks,
                task_manager,
                num_fewshot=config.num_fewshot,
                limit=config.limit_value,
                bootstrap_iters=config.bootstrap_iters,
                log_samples=config.log_samples,
            )
        seconds = time.perf_counter() - started
        meta = {
            "model": plan.model_name,
            "model_key": plan.model_key,
            "model_type": combo.model_type,
            "sae": combo.sae,
            "sae_source": [src for src, _ in plan.sae_sources] if combo.sae else None,
            "sae_layer": sorted(saes) if combo.sae else None,
            "adapter": str(adapter) if combo.peft else None,
            "tasks": plan.tasks,
            "num_fewshot": config.num_fewshot,
            "limit": config.limit_value,
            "max_length": config.max_length,
            # which SAE weights (None without an SAE): the SAE columns pair only on equal fingerprints
            "sae_fingerprint": fingerprint(
                plan.model_key,
                None,
                {"sae_source": [src for src, _ in plan.sae_sources], "sae_layer": sorted(saes)},
                [weights_digest(src) for src, _ in plan.sae_sources],
            )
            if combo.sae
            else None,
            "batch_size": batch_size,
            "dtype": config.model_dtype,
            "device": str(device),
            "seconds": round(seconds, 2),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        path = write_results(path, out, meta)
        write_eval_record(path, "benchmark_result", identity)
        written.append(path)
        print(
            f"[benchmarks] {plan.model_key} {combo.label}: {summary_line(out['results'], plan.tasks)} "
            f"({seconds:.1f} s) -> {path}"
        )
    print(comparison_table(plan.model_key, tasks=plan.tasks, variant=variant, slot=slot))
    return written
