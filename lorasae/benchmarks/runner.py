"""Run lm-eval-harness on the base or LoRA model, with or without the SAE spliced in (SPEC §4.3): pick
the SAE and adapter, call `simple_evaluate`, write `eval/benchmarks/results/<model>_<peft|base>_<sae|no_sae>.json`,
and compare the four combinations in one table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from lorasae.atomic import atomic_write_json, atomic_write_text, read_json
from lorasae.benchmarks.config import HUB_TASKS, BenchmarkConfig
from lorasae.benchmarks.tasks import BUILTIN_TASKS, is_builtin_task, write_builtin_tasks
from lorasae.benchmarks.wrapper import benchmark_lm
from lorasae.models import check_layer, load_model, model_key, num_layers
from lorasae.paths import eval_dir, root, sanitize
from lorasae.runtime import parse_device, seed_everything, setup_environment


@dataclass(frozen=True)
class Combination:
    """One of the four settings: base or LoRA model, SAE spliced or not."""

    peft: bool
    sae: bool

    @property
    def model_type(self) -> str:
        return "peft" if self.peft else "base"

    @property
    def sae_label(self) -> str:
        return "sae" if self.sae else "no_sae"

    @property
    def label(self) -> str:
        return f"{self.model_type}_{self.sae_label}"


ALL_FOUR: tuple[Combination, ...] = (
    Combination(peft=False, sae=False),
    Combination(peft=False, sae=True),
    Combination(peft=True, sae=False),
    Combination(peft=True, sae=True),
)


# --- paths ----------------------------------------------------------------------------------------


def results_dir(base: Path | None = None) -> Path:
    return eval_dir("benchmarks", base) / "results"


def results_path(model: str, combination: Combination, base: Path | None = None) -> Path:
    """`eval/benchmarks/results/<model>_<peft|base>_<sae|no_sae>.json` (`<model>`: the short model key)."""
    return results_dir(base) / f"{sanitize(model)}_{combination.label}.json"


def builtin_tasks_dir(seed: int = 0, n_docs: int | None = None, base: Path | None = None) -> Path:
    """Where the built-in lm-eval tasks of a world are generated (beside the results computed on them)."""
    name = f"world_{seed}" + (f"_{n_docs}docs" if n_docs is not None else "")
    return results_dir(base) / "builtin_tasks" / name


def world_of(model_name: str) -> tuple[int, int | None]:
    """`(seed, n_docs)` of the built-in world a model was pretrained on (its `world.json`); the default
    world `(0, None)` for other models."""
    from lorasae.models import resolve_model_name

    path = Path(resolve_model_name(model_name))
    info_path = path / "world.json"
    if not info_path.is_file():
        return 0, None
    config = read_json(info_path).get("config", {})
    n_docs = config.get("n_docs")
    return int(config.get("seed", 0)), (int(n_docs) if n_docs is not None else None)


def is_builtin_world_model(model_name: str) -> bool:
    """The built-in model, or a folder of a model pretrained on the built-in world (has `world.json`)."""
    return model_name == "tiny" or (Path(model_name).expanduser() / "world.json").is_file()


def default_tasks(model_name: str) -> list[str]:
    """The built-in tasks for models of the built-in world, MMLU/HellaSwag/TruthfulQA otherwise."""
    return list(BUILTIN_TASKS) if is_builtin_world_model(model_name) else list(HUB_TASKS)


# --- SAE and adapter lookup -----------------------------------------------------------------------


@dataclass
class Plan:
    """What one invocation evaluates: the model, the tasks, the combinations, and (once resolved) the
    SAEs `[(source, layer or None)]` and the adapter folder."""

    model_name: str
    model_key: str
    tasks: list[str]
    combinations: tuple[Combination, ...]
    sae_sources: list[tuple[str, int | None]] = field(default_factory=list)
    adapter: Path | None = None

    @property
    def needs_sae(self) -> bool:
        return any(c.sae for c in self.combinations)

    @property
    def needs_adapter(self) -> bool:
        return any(c.peft for c in self.combinations)


def plan_run(config: BenchmarkConfig) -> Plan:
    """The model, tasks and combinations of a run (no files are looked at)."""
    config.validate()
    name = config.model_name
    combos = ALL_FOUR if config.all_four else (Combination(config.model_type == "peft", config.sae),)
    return Plan(
        model_name=name,
        model_key=model_key(name),
        tasks=config.task_list or default_tasks(name),
        combinations=combos,
    )


def _saved_sae_dirs(model: str, tag: str | None = None, base: Path | None = None) -> list[Path]:
    folder = (Path(base) if base is not None else root()) / "saved_saes" / sanitize(model)
    pattern = f"*/{tag if tag is not None else '*'}/model.layers.*/cfg.json"
    return [cfg.parent for cfg in folder.glob(pattern)]


def find_sae_dir(model: str, layer: int | None = None, base: Path | None = None) -> Path:
    """The newest SAE of `model` under `saved_saes/<model>/` (at `layer` if given): final SAEs before
    percentage checkpoints, TopK ('normal') before e2e. Raises FileNotFoundError naming what to run."""
    found = [
        p for p in _saved_sae_dirs(model, base=base) if layer is None or layer_from_path(str(p)) == layer
    ]
    if not found:
        at_layer = f" at layer {layer}" if layer is not None else ""
        raise FileNotFoundError(
            f"No saved SAE for model {model!r}{at_layer} under "
            f"{(Path(base) if base is not None else root()) / 'saved_saes' / sanitize(model)}. Train one "
            f"with `python train_sae.py --model_type {model} --layer <L> ...`, or pass --sae_source "
            "(a folder or a sae-lens release/sae_id)."
        )

    def preference(path: Path) -> tuple[bool, bool, float]:
        final = not path.parent.name.endswith("pct")
        return final, path.parent.parent.name == "normal", (path / "cfg.json").stat().st_mtime

    return max(found, key=preference)


def _first_sae_dir(keys: Sequence[str], layer: int | None) -> Path:
    errors: list[FileNotFoundError] = []
    for key in keys:
        try:
            return find_sae_dir(key, layer)
        except FileNotFoundError as err:
            errors.append(err)
    raise errors[0]


def _csv_sae_sources(model: str, adapter: Path, base: Path | None = None) -> list[tuple[str, int | None]]:
    """The SAEs an adapter was trained with, from its row in `data/results.csv` (newest row first)."""
    import csv

    from lorasae.paths import results_csv

    path = results_csv(base)
    if not path.exists():
        return []
    tag, span, rank = adapter.parent.parent.name, adapter.parent.name.removeprefix("peft_"), adapter.name
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in reversed(rows):
        lora = [int(x) for x in _expand_layers(row.get("lora_layers", ""))]
        if (
            row.get("model") == sanitize(model)
            and sanitize(row.get("sae_tag", "")) == tag
            and f"rank_{row.get('rank')}" == rank
            and lora
            and f"{min(lora)}-{max(lora)}" == span
            and row.get("sae_source")
        ):
            sources = row["sae_source"].split(";")
            layers = [int(x) for x in _expand_layers(row.get("sae_layers", ""))]
            if len(layers) != len(sources):
                layers_or_none: list[int | None] = [None] * len(sources)
            else:
                layers_or_none = list(layers)
            return list(zip(sources, layers_or_none))
    return []


def _expand_layers(text: str) -> list[int]:
    """`"1,3-5"` → [1, 3, 4, 5]; empty or malformed text → []."""
    from lorasae.lora.adapters import parse_layer_spec

    try:
        return parse_layer_spec(text) if text.strip() else []
    except ValueError:
        return []


def sae_sources_for_adapter(
    adapter: Path, layer: int | None = None, base: Path | None = None
) -> list[tuple[str, int | None]]:
    """The SAE(s) an adapter `saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>/` was trained for:
    its row in results.csv, else the SAE folder named by its tag under `saved_saes/<model>/`."""
    model = adapter.parents[2].name
    from_csv = _csv_sae_sources(model, adapter, base)
    if from_csv:
        return from_csv
    tag = adapter.parent.parent.name
    found = [
        p for p in _saved_sae_dirs(model, tag, base) if layer is None or layer_from_path(str(p)) == layer
    ]
    if len(found) == 1:
        return [(str(found[0]), layer_from_path(str(found[0])))]
    what = "several SAE folders" if found else "no SAE folder"
    raise FileNotFoundError(
        f"The adapter {adapter} was trained for SAE {tag!r}, but {what} under saved_saes/{sanitize(model)}/ "
        f"match{'' if found else 'es'} it{' (' + ', '.join(map(str, found)) + ')' if found else ''}: pass "
        "--sae_source (and --sae_layer)."
    )


def resolve_pairing(config: BenchmarkConfig, plan: Plan, n_layers: int) -> Plan:
    """Settle which SAE(s) and adapter the combinations use, so that the four results files of a model
    describe one SAE and the adapter trained for it:
    - the Gemma Scope settings (--model_size): the original's SAE and its rank-64 adapter on layers L+1…n-1;
    - --sae_source: that SAE, and the newest adapter trained for it;
    - --adapter: that adapter, and the SAE it was trained for (results.csv, else its tag folder);
    - neither: the newest adapter of the model and its SAE, or, with no adapter saved, the newest SAE."""
    from lorasae.lora.sae_refs import source_tag

    keys = model_keys(plan.model_name)
    layer = config.sae_layer
    gemma_scope = config.gemma_scope
    rank = config.rank
    span = None
    sources: list[tuple[str, int | None]] = []
    if config.sae_source or gemma_scope is not None:
        source = config.sae_source or str(gemma_scope["sae"])  # type: ignore[index]
        if layer is None:
            layer = layer_from_path(source)
        if layer is None and gemma_scope is not None and not config.sae_source:
            layer = int(gemma_scope["layer"])
        sources = [(source, layer)]
        if gemma_scope is not None:
            rank = rank if rank is not None else int(gemma_scope["rank"])
            if layer is not None:
                span = f"{layer + 1}-{n_layers - 1}"  # the original's `after` adapters
    adapter: Path | None = None
    if config.adapter:
        adapter = Path(config.adapter).expanduser()
        if not (adapter / "adapter_config.json").exists():
            raise FileNotFoundError(
                f"--adapter {adapter} holds no PEFT adapter (adapter_config.json missing)."
            )
    elif sources:
        if plan.needs_adapter:
            tags: list[str | None] = [source_tag(sources[0][0])]
            if gemma_scope is not None:  # adapters trained by the original repository
                tags.append(sae_id_tag(sources[0][0]))
            adapter = _newest_adapter(keys, tags, rank, span)
    elif plan.needs_adapter or plan.needs_sae:
        try:
            adapter = _newest_adapter(keys, rank=rank)
        except FileNotFoundError:
            if plan.needs_adapter:
                raise
    if not sources and adapter is not None and plan.needs_sae:
        sources = sae_sources_for_adapter(adapter, layer)
    elif not sources and plan.needs_sae:
        found = _first_sae_dir(keys, layer)
        sources = [(str(found), layer_from_path(str(found)))]
    plan.sae_sources = sources if plan.needs_sae else []
    plan.adapter = adapter if plan.needs_adapter else None
    return plan


def model_keys(name: str) -> list[str]:
    """Every short name a model's outputs may be saved under: its own key first, then the registry
    aliases of the same hub model and the hub id's last part (`google/gemma-2-2b`: `gemma-2-2b`, the
    original's folder, and `gemma`, this project's `--model_type gemma`)."""
    from lorasae.models import MODEL_REGISTRY

    target = MODEL_REGISTRY.get(name, name)
    keys = [model_key(name)]
    keys += [model_key(alias) for alias, hub in MODEL_REGISTRY.items() if hub == target]
    if "/" in target and not target.startswith("builtin:"):
        keys.append(model_key(target))
    return list(dict.fromkeys(keys))


def _newest_adapter(
    keys: Sequence[str],
    tags: Sequence[str | None] = (None,),
    rank: int | None = None,
    span: str | None = None,
) -> Path:
    """The newest adapter saved under any of `keys` for any of `tags`; the first lookup's error (which
    lists what exists) when there is none."""
    from lorasae.lora.adapters import find_adapter

    found: list[Path] = []
    first_error: FileNotFoundError | None = None
    for key in keys:
        for tag in tags:
            try:
                found.append(find_adapter(key, sae_tag=tag, rank=rank, lora_span=span))
            except FileNotFoundError as err:
                first_error = first_error or err
    if found:
        return max(found, key=lambda p: (p / "adapter_config.json").stat().st_mtime)
    assert first_error is not None
    raise first_error


def layer_from_path(source: str) -> int | None:
    """`.../model.layers.<L>` → L."""
    from lorasae.lora.sae_refs import layer_from_path as from_path

    return from_path(source)


def sae_id_tag(source: str) -> str:
    """The original repository's adapter tag for a sae-lens release: the sae_id with `_` for `/`
    (`layer_12_width_16k_average_l0_82`)."""
    _release, _, sae_id = source.partition("/")
    return sanitize((sae_id or source).replace("/", "_"))


def load_spliced_saes(
    sources: Sequence[tuple[str, int | None]], model: nn.Module, device: Any
) -> dict[int, Any]:
    """`{layer: SAE}`: each SAE loaded in float32 and frozen; its layer is the given one, else its own."""
    from lorasae.sae.sources import load_sae

    saes: dict[int, Any] = {}
    for source, given in sources:
        sae = load_sae(source, device=device, dtype="float32")
        layer = given if given is not None else getattr(sae, "hook_layer", None)
        if layer is None:
            raise ValueError(f"The SAE {source} does not say which layer it belongs to: pass --sae_layer.")
        check_layer(model, layer)
        if layer in saes:
            raise ValueError(f"Two SAEs for layer {layer}: give one SAE per layer.")
        if hasattr(sae, "requires_grad_"):
            sae.requires_grad_(False)
        if hasattr(sae, "eval"):
            sae.eval()
        saes[layer] = sae
    return saes


# --- evaluation -----------------------------------------------------------------------------------


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
    model, tokenizer = load_model(plan.model_name, device=device, dtype=config.model_dtype)
    for param in model.parameters():
        param.requires_grad_(False)

    resolve_pairing(config, plan, num_layers(model))
    saes = load_spliced_saes(plan.sae_sources, model, device) if plan.needs_sae else {}
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
    written: list[Path] = []
    peft_model = None
    for combo in plan.combinations:
        if combo.peft and peft_model is None:
            from lorasae.lora.adapters import load_peft_model

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
            "batch_size": batch_size,
            "dtype": config.model_dtype,
            "device": str(device),
            "seconds": round(seconds, 2),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        path = write_results(results_path(plan.model_key, combo), out, meta)
        written.append(path)
        print(
            f"[benchmarks] {plan.model_key} {combo.label}: {summary_line(out['results'], plan.tasks)} "
            f"({seconds:.1f} s) -> {path}"
        )
    print(comparison_table(plan.model_key, tasks=plan.tasks))
    return written


# --- reading results back and comparing -----------------------------------------------------------


def load_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """Per-task metrics of a results file: ours (`{"results": ...}`) or the original's (task → metrics)."""
    data = read_json(path)
    return data["results"] if isinstance(data, dict) and "results" in data else data


def task_metrics(metrics: dict[str, Any]) -> dict[str, tuple[float, float | None]]:
    """`{"acc,none": 0.5, "acc_stderr,none": 0.1}` → `{"acc": (0.5, 0.1)}`."""
    found: dict[str, tuple[float, float | None]] = {}
    for key, value in metrics.items():
        name, comma, filt = key.partition(",")
        # metrics are `<metric>,<filter>`; `sample_len`, `alias`, ... are not
        if not comma or "_stderr" in name or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        label = name if filt in ("", "none") else f"{name} ({filt})"
        stderr = metrics.get(f"{name}_stderr,{filt}")
        found[label] = (float(value), float(stderr) if isinstance(stderr, (int, float)) else None)
    return found


def summary_line(results: dict[str, dict[str, Any]], tasks: Iterable[str]) -> str:
    parts = []
    for task in tasks:
        metrics = task_metrics(results.get(task, {}))
        if metrics:
            metric, (value, _) = next(iter(metrics.items()))
            parts.append(f"{task} {metric} {value:.3f}")
    return ", ".join(parts)


def comparison_table(
    model: str,
    tasks: Sequence[str] | None = None,
    base: Path | None = None,
    tablefmt: str = "github",
) -> str:
    """One row per (task, metric), one column per combination found on disk (value ± stderr)."""
    from tabulate import tabulate

    found = {c: results_path(model, c, base) for c in ALL_FOUR}
    loaded = {c: load_results(p) for c, p in found.items() if p.exists()}
    if not loaded:
        return f"(no benchmark results for {model} under {results_dir(base)})"
    names = list(tasks) if tasks else sorted({t for r in loaded.values() for t in r})
    rows = []
    for task in names:
        metric_names: list[str] = []
        for results in loaded.values():
            for metric in task_metrics(results.get(task, {})):
                if metric not in metric_names:
                    metric_names.append(metric)
        sizes = {
            r[task]["sample_len"]
            for r in loaded.values()
            if isinstance(r.get(task, {}).get("sample_len"), int)
        }
        label = f"{task} (n={sizes.pop()})" if len(sizes) == 1 else task
        for metric in metric_names:
            row = [label, metric]
            for combo in ALL_FOUR:
                value = task_metrics(loaded.get(combo, {}).get(task, {})).get(metric)
                if value is None:
                    row.append("—")
                else:
                    mean, stderr = value
                    row.append(f"{mean:.4f}" + (f" ± {stderr:.4f}" if stderr is not None else ""))
            rows.append(row)
    headers = ["task", "metric", *(c.label for c in ALL_FOUR)]
    return f"{model}: lm-eval benchmarks\n" + tabulate(rows, headers=headers, tablefmt=tablefmt)
