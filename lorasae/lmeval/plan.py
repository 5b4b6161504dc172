"""What one invocation evaluates (`Plan`, `plan_run`): the model, its default tasks (the built-in ones for
models of the built-in world, `world_of`), and the combinations; the SAE and adapter are settled later by
`lorasae.lmeval.pairing.resolve_pairing`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from lorasae.lmeval.config import DEFAULT_BOOTSTRAP_ITERS, HUB_TASKS, BenchmarkConfig
from lorasae.lmeval.layout import ALL_FOUR, Combination
from lorasae.lmeval.tasks import BUILTIN_TASKS
from lorasae.model.load import model_key
from lorasae.world.sizes import is_builtin_size


def world_of(model_name: str) -> tuple[int, int | None]:
    """`(seed, n_docs)` of the built-in world a model was pretrained on (its `world.json`); the default
    world `(0, None)` for other models."""
    from lorasae.world import world_info

    info = world_info(model_name)
    n_docs = info.get("config", {}).get("n_docs")
    return int(info.get("seed", 0)), (int(n_docs) if n_docs is not None else None)


def is_builtin_world_model(model_name: str) -> bool:
    """The built-in model, or a folder of a model pretrained on the built-in world (has `world.json`)."""
    return is_builtin_size(model_name) or (Path(model_name).expanduser() / "world.json").is_file()


def default_tasks(model_name: str) -> list[str]:
    """The built-in tasks for models of the built-in world, MMLU/HellaSwag/TruthfulQA otherwise."""
    return list(BUILTIN_TASKS) if is_builtin_world_model(model_name) else list(HUB_TASKS)


def result_variant(config: BenchmarkConfig, tasks: list[str], model_name: str) -> str:
    """The result names' variant of a run (`layout.settings_variant`): its limit, few-shot and length, and
    its tasks, dtype and bootstrap iterations where they differ from the defaults for the model."""
    from lorasae.lmeval.layout import settings_variant

    default_dtype = dataclasses.replace(config, dtype=None).model_dtype
    return settings_variant(
        config.limit_value, config.num_fewshot, config.max_length,
        tasks=tasks if sorted(tasks) != sorted(default_tasks(model_name)) else None,
        dtype=config.model_dtype if config.model_dtype != default_dtype else None,
        bootstrap_iters=config.bootstrap_iters if config.bootstrap_iters != DEFAULT_BOOTSTRAP_ITERS else None,
    )  # fmt: skip


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
    combos = (
        ALL_FOUR if config.all_four else (Combination(config.model_variant == "peft", config.splice_sae),)
    )
    return Plan(
        model_name=name,
        model_key=model_key(name),
        tasks=config.task_list or default_tasks(name),
        combinations=combos,
    )
