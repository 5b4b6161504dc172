"""The downstream benchmarks (lm-eval tasks, base / LoRA × without / with the SAE) as a suite of the
registry (`lorasae.evals`)."""

from __future__ import annotations

from lorasae.evals.shape import DEMO_MODEL, DemoContext, EvalSizes, EvalSuite, Stage

MODEL = DEMO_MODEL


def demo_stage(ctx: DemoContext) -> Stage:
    """`make demo`'s benchmarks stage (`benchmarks_stage`)."""

    return benchmarks_stage(ctx.device, ctx.layer, ctx.seed, ctx.force, ctx.sizes)


SUITES = (
    EvalSuite(
        "benchmarks",
        "benchmark accuracy of the base and the LoRA model, without and with the SAE spliced",
        config="lorasae.lmeval.config:BenchmarkConfig",
        run="lorasae.lmeval.run:run_benchmarks",
        table="lorasae.lmeval.comparison:comparison_table",
        demo_stage="lorasae.lmeval.suite:demo_stage",
        order=30,
        dictionaries="any",
    ),
)


def benchmarks_stage(device: str, layer: int, seed: int, force: bool, sizes: EvalSizes) -> Stage:
    """`eval/benchmarks/run_benchmarks.py --model tiny --all_four`: base / LoRA × without / with the SAE."""
    from lorasae.lmeval.config import BenchmarkConfig

    config = BenchmarkConfig(
        device=device,
        model=MODEL,
        all_four=True,
        seed=seed,
        limit=sizes.benchmark_limit,
        sae_layer=layer,
        overwrite=force,
    )  # fmt: skip

    def done() -> bool:
        from lorasae.lmeval.pairing import planned_paths

        paths = planned_paths(config)  # the default SAE's and adapter's: the original names
        return paths is not None and all(path.exists() for path in paths)

    def run() -> None:
        from lorasae.lmeval.run import run_benchmarks

        run_benchmarks(config)

    return "benchmarks (base / LoRA × without / with the SAE)", not force and done(), run
