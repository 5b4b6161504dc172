"""The steering evaluation as a suite of the registry (`lorasae.evals`)."""

from __future__ import annotations

from lorasae.evals.shape import DemoContext, EvalSuite, Stage


def demo_stage(ctx: DemoContext) -> Stage:
    """`make demo`'s steering stage (`demo_evals.steering_stage`)."""
    from lorasae.demo_evals import steering_stage

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
