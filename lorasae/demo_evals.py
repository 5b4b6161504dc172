"""`make demo`'s evaluation stages on the built-in model: each runs the same code as the README command it
names (SAE-Bench base and LoRA-merged, steering, the benchmarks, the multiple-SAE LoRA, Dark Matter), at
the sizes the demo's time budget allows, and says when its outputs already exist.

Every stage is `(title, done, fn)` for `lorasae.demo_stages.Stages.run`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lorasae import paths
from lorasae.saebench.suite import OFFLINE

if TYPE_CHECKING:
    from lorasae.steering.scripts import EvalConfig, PositivesConfig, TuneConfig

Stage = tuple[str, bool, Callable[[], object]]
MODEL = "tiny"

# SAEBench's evals that run offline (autointerp needs an LLM judge: it runs when $OPENAI_API_KEY is set)
OFFLINE_SAEBENCH = OFFLINE


@dataclass(frozen=True)
class EvalSizes:
    """How much of each eval the demo runs (the README commands run the scripts' defaults)."""

    steering_negatives: int = 50
    """Examples per negative set in the steering evaluation (the script's default: 100)."""
    steering_snippets: int = 5_000
    """Corpus snippets scored when mining the positives (default 20,000)."""
    steering_grid: str = "0.5,1,2,4,8"
    """Alphas tuned (default 0.25 … 32)."""
    benchmark_limit: float | None = 100
    """Documents per benchmark task (None: every document; the built-in tasks have 69–275)."""
    saebench_evals: str = "offline"
    """SAE-Bench evals: offline (every eval that needs no LLM judge; autointerp too when $OPENAI_API_KEY is
    set) or a comma-separated list."""
    dark_matter_tokens: int = 24_000
    """Tokens of each SAEInfo (half fit the linear map, half score it)."""
    dark_matter_pursuit_tokens: int = 1_000
    """Held-out tokens of gradient pursuit."""
    dark_matter_error_sae_steps: int = 150
    """Steps of each SAE trained on an error component."""
    dark_matter_ce_chunks: int = 16
    """Held-out chunks of the downstream-CE evaluation."""


def saebench_evals(spec: str = "offline") -> list[str]:
    import os

    from lorasae.llm import API_KEY_ENV

    if spec != "offline":
        return [name.strip() for name in spec.split(",") if name.strip()]
    return [*OFFLINE_SAEBENCH, "autointerp"] if os.environ.get(API_KEY_ENV) else list(OFFLINE_SAEBENCH)


def saebench_stage(device: str, layer: int, seed: int, force: bool, sizes: EvalSizes) -> Stage:
    """`eval/SAE-Bench/run_eval.py --model tiny --model_type base`, then `--model_type peft` (the adapter
    the store picks for the main SAE: every layer, highest rank); the comparison table and figure."""
    from lorasae.saebench.args import SaeBenchArgs, result_variant

    evals = saebench_evals(sizes.saebench_evals)

    def args(variant: str) -> SaeBenchArgs:
        return SaeBenchArgs(
            device=device, model=MODEL, model_variant=variant, evals=",".join(evals), seed=seed, layer=layer
        )

    def done() -> bool:
        from lorasae.saebench.comparison import load_results
        from lorasae.store import resolve_sae

        try:
            tag = resolve_sae(MODEL, None, layer).tag
        except FileNotFoundError:  # no SAE yet: nothing evaluated
            return False
        found = load_results(MODEL, sae_tag=tag, variant=result_variant(args("base")))  # the demo's slots
        return all(e in found.get(t, {}) for t in ("base", "peft") for e in evals)

    def run() -> None:
        from lorasae.saebench.run import run as run_eval

        for variant in ("base", "peft"):
            run_eval(args(variant))

    return f"SAE-Bench ({', '.join(evals)}) on the base and the LoRA-merged model", not force and done(), run


def steering_results() -> list[Path]:
    from lorasae.results import find_steering_results

    return find_steering_results(None)


def steering_stage(device: str, layer: int, seed: int, force: bool, sizes: EvalSizes) -> Stage:
    """The three steering scripts: positives mined from the corpus for the latent chosen automatically,
    alpha tuned on the tuning split, the evaluation with its histograms and LoRA − base intervals."""
    from lorasae.steering import scripts

    common = dict(
        device=device, model_type=MODEL, layer=layer, seed=seed, num_negatives=sizes.steering_negatives
    )
    positives = scripts.PositivesConfig(**common, max_snippets=sizes.steering_snippets)
    tune = scripts.TuneConfig(**common, grid=sizes.steering_grid)
    evaluate = scripts.EvalConfig(**common)

    def run() -> None:
        from dataclasses import replace

        from lorasae.steering.context import load_context
        from lorasae.steering.latent import resolve_latent

        ctx = load_context(scripts.PositivesConfig(**common), with_adapter=False)
        latent = resolve_latent(ctx, None)  # chosen once; the three steps then name it
        del ctx
        scripts.make_positives(replace(positives, neuron=latent))
        scripts.tune(replace(tune, neuron=latent))
        scripts.evaluate(replace(evaluate, neuron=latent))

    done = steering_done(steering_variant(positives, tune, evaluate))
    return "steering (latent, positives, alpha, evaluation)", not force and done, run


def steering_variant(positives: PositivesConfig, tune: TuneConfig, evaluate: EvalConfig) -> str:
    """The settings variant the three steering steps give the evaluation's result (each step names its
    output by its own settings off their defaults and those of the output it built on)."""
    from lorasae.steering.variants import TUNE_ACCUMULATED, step_variant

    off, _ = step_variant(positives)
    off, _ = step_variant(tune, off, ignore=TUNE_ACCUMULATED)
    return step_variant(evaluate, off)[1]


def steering_done(variant: str) -> bool:
    """A steering result of `MODEL` with the settings `variant` exists (found through its run record)."""
    from lorasae.atomic import read_output_json
    from lorasae.eval_identity import found

    for path in steering_results():
        data = read_output_json(path)
        if isinstance(data, dict) and data.get("model") == MODEL and found(path).variant == variant:
            return True
    return False


def benchmarks_stage(device: str, layer: int, seed: int, force: bool, sizes: EvalSizes) -> Stage:
    """`eval/benchmarks/run_benchmarks.py --model tiny --all_four`: base / LoRA × without / with the SAE."""
    from lorasae.benchmarks.config import BenchmarkConfig
    from lorasae.benchmarks.layout import ALL_FOUR, results_path, settings_variant

    def done() -> bool:
        variant = settings_variant(limit=BenchmarkConfig(limit=sizes.benchmark_limit).limit_value)
        return all(results_path(MODEL, combo, variant=variant).exists() for combo in ALL_FOUR)

    def run() -> None:
        from lorasae.benchmarks.run import run_benchmarks

        run_benchmarks(
            BenchmarkConfig(
                device=device,
                model=MODEL,
                all_four=True,
                seed=seed,
                limit=sizes.benchmark_limit,
                sae_layer=layer,
            )  # fmt: skip
        )

    return "benchmarks (base / LoRA × without / with the SAE)", not force and done(), run


def dark_matter_stage(device: str, layer: int, ks: Sequence[int], sae_tokens: int, lora_examples: int,
                      rank: int, seed: int, force: bool, sizes: EvalSizes) -> Stage:  # fmt: skip
    """`eval/dark_matter/run.py --model_type tiny` over the demo's width sweep (×2…×16 at the main k) and
    k sweep (×8), and base vs LoRA for the main SAE with its rank-`rank` adapter on every layer."""
    from lorasae.darkmatter.cli import DarkMatterArgs, result_variant
    from lorasae.darkmatter.cli import main as run_dark_matter
    from lorasae.eval_identity import find_result

    args = DarkMatterArgs(
        device=device, model_type=MODEL, layer=layer, ks=list(ks), sae_tokens=sae_tokens,
        lora_examples=lora_examples, lora_rank=rank, seed=seed, num_tokens=sizes.dark_matter_tokens,
        pursuit_tokens=sizes.dark_matter_pursuit_tokens, error_sae_steps=sizes.dark_matter_error_sae_steps,
        ce_chunks=sizes.dark_matter_ce_chunks,
    )  # fmt: skip
    what = f"Dark Matter results of {MODEL}"
    done = (
        not force
        and find_result(paths.dark_matter_dir(MODEL), "results", what, result_variant(args)) is not None
    )
    return (
        "Dark Matter of SAEs (error prediction, power law, components, base vs LoRA)",
        not force and done,
        lambda: run_dark_matter(args),
    )
