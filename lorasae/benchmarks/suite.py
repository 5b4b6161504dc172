"""The downstream benchmarks (lm-eval tasks, base / LoRA × without / with the SAE) as a suite of the
registry (`lorasae.evals`)."""

from __future__ import annotations

from lorasae.evals.shape import DemoContext, EvalSuite, Stage


def demo_stage(ctx: DemoContext) -> Stage:
    """`make demo`'s benchmarks stage (`demo_evals.benchmarks_stage`)."""
    from lorasae.demo_evals import benchmarks_stage

    return benchmarks_stage(ctx.device, ctx.layer, ctx.seed, ctx.force, ctx.sizes)


SUITES = (
    EvalSuite(
        "benchmarks",
        "benchmark accuracy of the base and the LoRA model, without and with the SAE spliced",
        config="lorasae.benchmarks.config:BenchmarkConfig",
        run="lorasae.benchmarks.run:run_benchmarks",
        table="lorasae.benchmarks.comparison:comparison_table",
        demo_stage="lorasae.benchmarks.suite:demo_stage",
        order=30,
        dictionaries="any",
    ),
)
