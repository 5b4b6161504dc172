"""Dark Matter of SAEs as a suite of the registry (`lorasae.evals`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lorasae.core import paths
from lorasae.evals.shape import DEMO_MODEL, DemoContext, EvalSizes, EvalSuite, Stage

if TYPE_CHECKING:
    from lorasae.darkmatter.cli import DarkMatterArgs

MODEL = DEMO_MODEL


def demo_stage(ctx: DemoContext) -> Stage:
    """`make demo`'s Dark Matter stage (`dark_matter_stage`): the k sweep without the main k."""

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
        demo_beside=True,  # as fast on one thread as on two (36 vs 41 s): beside SAE-Bench and steering
    ),
)


def dark_matter_stage(device: str, layer: int, ks: Sequence[int], sae_tokens: int, lora_examples: int,
                      rank: int, seed: int, force: bool, sizes: EvalSizes) -> Stage:  # fmt: skip
    """`eval/dark_matter/run.py --model_type tiny` over the demo's width sweep (×2…×16 at the main k) and
    k sweep (×8), and base vs LoRA for the main SAE with its rank-`rank` adapter on every layer."""
    from lorasae.core.result_choice import find_result
    from lorasae.darkmatter.cli import main as run_dark_matter
    from lorasae.darkmatter.cli import result_variant

    args = demo_args(device, layer, ks, sae_tokens, lora_examples, rank, seed, force, sizes)
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


def demo_args(device: str, layer: int, ks: Sequence[int], sae_tokens: int, lora_examples: int, rank: int,
              seed: int, force: bool, sizes: EvalSizes) -> DarkMatterArgs:  # fmt: skip
    """The settings `make demo` runs `eval/dark_matter/run.py` with (`dark_matter_stage`)."""
    from lorasae.darkmatter.cli import DarkMatterArgs

    return DarkMatterArgs(
        device=device, model_type=MODEL, layer=layer, ks=list(ks), sae_tokens=sae_tokens,
        lora_examples=lora_examples, rank=rank, seed=seed, num_tokens=sizes.dark_matter_tokens,
        pursuit_tokens=sizes.dark_matter_pursuit_tokens, error_sae_steps=sizes.dark_matter_error_sae_steps,
        ce_chunks=sizes.dark_matter_ce_chunks, overwrite=force,
    )  # fmt: skip
