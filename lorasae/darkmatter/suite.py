"""Dark Matter of SAEs as a suite of the registry (`lorasae.evals`)."""

from __future__ import annotations

from lorasae.evals.shape import DemoContext, EvalSuite, Stage


def demo_stage(ctx: DemoContext) -> Stage:
    """`make demo`'s Dark Matter stage (`demo_evals.dark_matter_stage`): the k sweep without the main k."""
    from lorasae.demo_evals import dark_matter_stage

    ks = tuple(x for x in ctx.sweep_k if x != ctx.k)
    return dark_matter_stage(
        ctx.device, ctx.layer, ks, ctx.sae_tokens, ctx.lora_examples, ctx.rank, ctx.seed, ctx.force, ctx.sizes
    )


SUITES = (
    EvalSuite(
        "dark_matter",
        "linear prediction of the SAE error, its power law with width, base vs LoRA",
        config="lorasae.darkmatter.cli:DarkMatterArgs",
        run="lorasae.darkmatter.cli:main",
        table="lorasae.darkmatter.report:report_markdown",
        figure="lorasae.darkmatter.figures:plot_decomposition",
        demo_stage="lorasae.darkmatter.suite:demo_stage",
        order=50,
    ),
)
