"""The scale study's measurements on one model and one LoRA run ("point"), each through the project's own
code: the model's TopK SAE (`train_sae`, trained when missing), the LoRA run (`train_lora`'s pipeline; its
CE gap closed and the gap's standard error), the built-in lm-eval tasks with and without the SAE spliced
(`lorasae.lmeval`), and the steering effect of the SAE latent chosen for the science concept through
the base and the LoRA model (`lorasae.steering`'s evaluator, at a fixed alpha)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lorasae.scale.config import Point, ScaleStudyConfig

SAE_EXPANSION = 8


@dataclass
class ModelSetup:
    """A model of the study: its shape, its SAE and the steering latent chosen on it."""

    name: str
    key: str
    d_model: int
    n_layers: int
    layer: int
    k: int
    sae_source: str
    latent: int | None = None


def model_setup(cfg: ScaleStudyConfig, name: str) -> ModelSetup:
    """The model's shape and its TopK SAE at `cfg.layer` (expansion 8, the default k for its width): the
    demo's SAE on a built-in size (`make demo` trains it), else trained here with `train_sae` on
    `cfg.sae_tokens` tokens when it does not exist yet (a folder of a built-in world, e.g. in tests)."""
    from lorasae.model.defaults import default_k
    from lorasae.model.load import model_key, model_shape
    from lorasae.train.config import TrainSaeConfig
    from lorasae.train.state import planned_dir

    shape = model_shape(name)
    k, key = default_k(shape.d_model), model_key(name)
    sae_cfg = TrainSaeConfig(
        device=cfg.device, model=name, dataset="builtin", layer=cfg.layer, k=k, expansion_factor=SAE_EXPANSION,
        num_train_tokens=cfg.sae_tokens, seed=42, eval_every_pct=100, checkpoint_every_pct=100,
    )  # fmt: skip
    folder = planned_dir(sae_cfg)  # the demo's SAE at the demo's budget has the plain name
    if not (folder / "cfg.json").is_file():
        from lorasae.world.sizes import is_builtin_size

        if is_builtin_size(name):  # the demo's SAE: trained here, the demo would refuse it as made otherwise
            raise FileNotFoundError(
                f"{folder} does not exist: the scale study adapts the SAEs of `make demo` on the built-in "
                "models; run `make demo` first (or `python -m lorasae.demo --evals false`)."
            )
        from lorasae.train.sae_trainer import train_sae

        train_sae(sae_cfg)
    return ModelSetup(name, key, shape.d_model, shape.n_layers, cfg.layer, k, str(folder))


def lora_config(cfg: ScaleStudyConfig, setup: ModelSetup, point: Point):
    """train_lora.py's config of a point (its adapter is saved for the evaluations)."""
    from lorasae.lora.config import TrainLoraConfig

    return TrainLoraConfig(
        device=cfg.device, model=setup.name, dataset="builtin", sae=[setup.sae_source],
        sae_layer=str(setup.layer), LoRA_layers=cfg.lora_layers, rank=point.rank,
        num_train_examples=point.examples, eval_every=point.examples, seed=point.seed, save_model=True,
        progress=False,
    )  # fmt: skip


def train_point(cfg: ScaleStudyConfig, setup: ModelSetup, point: Point) -> tuple[dict[str, float], Path]:
    """Train the point's LoRA (skipped when train_lora's own record says it is done); its CE numbers from
    results.csv (the row with the run's fingerprint) and its adapter folder."""
    from lorasae.core.gap import gap_closed
    from lorasae.lora.plan import plan_runs
    from lorasae.lora.run import main_many

    lora = lora_config(cfg, setup, point)
    main_many([lora])
    (planned,) = plan_runs(lora, preflight=False)
    row = _results_row(planned.fingerprint)
    gap = gap_closed(row["L_base"], row["L_SAE"], row["L_LoRA"], row["gap_se"])
    numbers = {k: row[k] for k in ("L_base", "L_SAE", "L_LoRA", "gap_se")}
    numbers["pct_gap_closed"] = 100 * gap.fraction if gap.fraction is not None else math.nan
    return numbers, planned.run_id.adapter_path()


def _results_row(fingerprint: str) -> dict[str, float]:
    from lorasae.core.atomic import read_csv_rows
    from lorasae.core.paths import results_csv

    rows = [r for r in read_csv_rows(results_csv())[1] if r.get("fingerprint") == fingerprint]
    if not rows:
        raise LookupError(f"{results_csv()} has no row of LoRA run {fingerprint}: rerun the study")
    last = rows[-1]

    def num(key: str) -> float:
        return float(last[key]) if last.get(key) not in (None, "") else math.nan

    return {k: num(k) for k in ("L_base", "L_SAE", "L_LoRA", "gap_se")}


# --- benchmarks ---------------------------------------------------------------------------------------


def benchmark_accuracy(
    model: Any,
    tokenizer: Any,
    name: str,
    saes: dict[int, Any] | None,
    limit: int | None,
    tasks: list[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Accuracy and its standard error on each built-in task (lm-eval; `tasks`, default all of them),
    with `saes` spliced in when given; plus `mean` over the tasks (its SE from the tasks' SEs, as
    independent)."""
    from lorasae.lmeval.comparison import task_metrics
    from lorasae.lmeval.plan import default_tasks, world_of
    from lorasae.lmeval.run import evaluate, task_manager_for
    from lorasae.lmeval.wrapper import benchmark_lm

    tasks = list(tasks or default_tasks(name))
    seed, n_docs = world_of(name)
    manager = task_manager_for(tasks, seed, n_docs)
    with benchmark_lm(model, tokenizer, saes, batch_size=16) as lm:
        out = evaluate(lm, tasks, manager, limit=limit, bootstrap_iters=1000)  # acc: closed-form SE
    accs: dict[str, dict[str, float]] = {}
    for task in tasks:
        acc, se = task_metrics(out["results"][task])["acc"]
        accs[task] = {"acc": acc, "se": se if se is not None else math.nan}
    values = [a["acc"] for a in accs.values()]
    ses = [a["se"] for a in accs.values()]
    accs["mean"] = {"acc": float(np.mean(values)), "se": float(np.sqrt(np.sum(np.square(ses))) / len(ses))}
    return accs


# --- steering -----------------------------------------------------------------------------------------


def steering_sets(cfg: ScaleStudyConfig, world_seed: int):
    """The steered examples: science documents (the concept the latent is chosen for) as positives, and
    the built-in negative sets, shortened like the steering eval's examples."""
    from lorasae.steering.latent import concept_texts
    from lorasae.steering.negatives import EvalSets, load_negative_sets, shorten

    texts, domains = concept_texts(world_seed)
    positives = [shorten(t) for t, d in zip(texts, domains) if d == "science"][: cfg.steering_positives]
    negatives = load_negative_sets("builtin", cfg.steering_negatives, world_seed)
    return EvalSets(positives, {k: v for k, v in negatives.items() if set(v).isdisjoint(positives)})


def steering_effect(ctx: Any, sets: Any, alpha: float) -> dict[str, float]:
    """Mean normalised Δ (steered − unsteered log-likelihood, % of the unsteered range) on the positives
    and on the pooled negatives, per model variant; `effect` = positive − negative mean; and the LoRA −
    base difference of the effect with its standard error (paired per example)."""
    from lorasae.steering.evaluator import Evaluator

    outcome = Evaluator(ctx, sets).evaluate(alpha)
    out: dict[str, float] = {}
    for kind in ctx.kinds:
        pos = outcome.delta[kind]["positive"]
        neg = np.concatenate([v for k, v in outcome.delta[kind].items() if k != "positive"])
        out[f"{kind}_positive"], out[f"{kind}_negative"] = float(pos.mean()), float(neg.mean())
        out[f"{kind}_effect"] = float(pos.mean() - neg.mean())
    if "lora" in ctx.kinds:
        dpos = outcome.delta["lora"]["positive"] - outcome.delta["base"]["positive"]
        dneg = np.concatenate(
            [
                outcome.delta["lora"][k] - outcome.delta["base"][k]
                for k in outcome.delta["base"]
                if k != "positive"
            ]
        )
        out["lora_minus_base"] = float(dpos.mean() - dneg.mean())
        out["lora_minus_base_se"] = float(
            math.sqrt(dpos.var(ddof=1) / len(dpos) + dneg.var(ddof=1) / len(dneg))
        )
    return out
