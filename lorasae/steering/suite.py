"""The steering evaluation as a suite of the registry (`lorasae.evals`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lorasae.evals.shape import DEMO_MODEL, DemoContext, EvalSizes, EvalSuite, Stage

MODEL = DEMO_MODEL

if TYPE_CHECKING:
    from lorasae.steering.scripts import EvalConfig, PositivesConfig, TuneConfig


def demo_stage(ctx: DemoContext) -> Stage:
    """`make demo`'s steering stage (`steering_stage`)."""

    return steering_stage(ctx.device, ctx.layer, ctx.seed, ctx.force, ctx.sizes)


SUITES = (
    EvalSuite(
        "steering",
        "steering a latent's decoder direction: concept likelihood vs side effects, base vs LoRA",
        config="lorasae.steering.scripts:EvalConfig",
        run="lorasae.steering.scripts:evaluate",
        table="lorasae.steering.final_eval:summary_table",
        figure="lorasae.plotting.steering:plot_steering_histograms",
        demo_stage="lorasae.steering.suite:demo_stage",
        order=20,
    ),
)


def steering_results() -> list[Path]:
    from lorasae.results import find_steering_results

    return find_steering_results(None)


def steering_stage(device: str, layer: int, seed: int, force: bool, sizes: EvalSizes) -> Stage:
    """The three steering scripts: positives mined from the corpus for the latent chosen automatically,
    alpha tuned on the tuning split, the evaluation with its histograms and LoRA − base intervals."""
    from lorasae.steering import scripts

    positives, tune, evaluate = demo_configs(device, layer, seed, force, sizes)

    def run() -> None:
        from dataclasses import replace

        from lorasae.steering.context import load_context
        from lorasae.steering.latent import resolve_latent

        ctx = load_context(
            scripts.PositivesConfig(**_common(device, layer, seed, force, sizes)), with_adapter=False
        )
        latent = resolve_latent(ctx, None)  # chosen once; the three steps then name it
        del ctx
        scripts.make_positives(replace(positives, neuron=latent))
        scripts.tune(replace(tune, neuron=latent))
        scripts.evaluate(replace(evaluate, neuron=latent))

    done = steering_done(steering_variant(positives, tune, evaluate))
    return "steering (latent, positives, alpha, evaluation)", not force and done, run


def _common(device: str, layer: int, seed: int, force: bool, sizes: EvalSizes) -> dict:
    return dict(
        device=device, model_type=MODEL, layer=layer, seed=seed, num_negatives=sizes.steering_negatives,
        overwrite=force,
    )  # fmt: skip


def demo_configs(
    device: str, layer: int, seed: int, force: bool, sizes: EvalSizes
) -> tuple[PositivesConfig, TuneConfig, EvalConfig]:
    """The settings `make demo` runs the three steering scripts with (before the latent is chosen)."""
    from lorasae.steering import scripts

    common = _common(device, layer, seed, force, sizes)
    return (
        scripts.PositivesConfig(**common, max_snippets=sizes.steering_snippets),
        scripts.TuneConfig(**common, grid=sizes.steering_grid),
        scripts.EvalConfig(**common),
    )


def steering_variant(positives: PositivesConfig, tune: TuneConfig, evaluate: EvalConfig) -> str:
    """The settings variant the three steering steps give the evaluation's result (each step names its
    output by its own settings off their defaults and those of the output it built on)."""
    from lorasae.steering.variants import TUNE_ACCUMULATED, step_variant

    off, _ = step_variant(positives)
    off, _ = step_variant(tune, off, ignore=TUNE_ACCUMULATED)
    return step_variant(evaluate, off)[1]


def steering_done(variant: str) -> bool:
    """A steering result of `MODEL` with the settings `variant` exists (found through its run record)."""
    from lorasae.core.atomic import read_output_json
    from lorasae.core.result_choice import found

    for path in steering_results():
        data = read_output_json(path)
        if isinstance(data, dict) and data.get("model") == MODEL and found(path).variant == variant:
            return True
    return False
