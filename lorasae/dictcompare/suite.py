"""The dictionary comparison as a suite of the registry (`lorasae.evals`): its demo stage runs the
comparison at the demo's budgets and the KL fine-tunes of the main TopK SAE's checkpoints (the timing
figure's "TopK + KL fine-tune")."""

from __future__ import annotations

from lorasae.evals.shape import DEMO_MODEL, DemoContext, EvalSuite, Stage


def demo_config(ctx: DemoContext):
    """The demo's comparison: the main SAE's layer, k and token budget, LoRA at the demo's rank and
    sequences, KL fine-tunes at train_sae.py's default budget (32,768 tokens), of each dictionary and of the
    checkpoints the timing experiment adapts with LoRA."""
    from lorasae.dictcompare.config import DictionariesConfig

    return DictionariesConfig(
        device=ctx.device, model_type=DEMO_MODEL, layer=ctx.layer, k=ctx.k, sae_tokens=ctx.sae_tokens,
        rank=ctx.rank, lora_examples=ctx.lora_examples, kl_checkpoints=list(ctx.checkpoints), seed=ctx.seed,
        overwrite=ctx.force,
    )  # fmt: skip


def demo_stage(ctx: DemoContext) -> Stage:
    from lorasae.dictcompare.comparison import run_comparison
    from lorasae.dictcompare.table import done

    cfg = demo_config(ctx)
    return (
        f"dictionaries at matched L0 (k={ctx.k}): {', '.join(cfg.architectures)}; LoRA, KL fine-tune, both; "
        f"KL fine-tunes of TopK checkpoints {list(ctx.checkpoints)} %",
        not ctx.force and done(cfg) and _checkpoints_done(cfg),
        lambda: run_comparison(cfg),
    )


def _checkpoints_done(cfg) -> bool:
    """Whether every checkpoint's KL fine-tune is done (by its run record)."""
    from pathlib import Path

    from lorasae.dictcompare.plan import kl_config, resolve, sae_config
    from lorasae.sae.sources import SaeNotFoundError
    from lorasae.store.saes import our_sae_runs
    from lorasae.train.sae_record import finished_run
    from lorasae.train.state import checkpoint_dir

    parent = resolve(sae_config(cfg, "topk"))
    for pct in cfg.kl_checkpoints:
        try:
            (run,) = our_sae_runs(DEMO_MODEL, [cfg.layer], "normal", parent.expansion_factor, parent.k, pct)
        except SaeNotFoundError:
            return False
        tuned = resolve(kl_config(cfg, parent, Path(run.refs[0].source)))
        if finished_run(tuned, checkpoint_dir(tuned)) is None:
            return False
    return True


SUITES = (
    EvalSuite(
        "dictionaries",
        "dictionaries at matched L0: spliced CE, LoRA, KL fine-tuning and both",
        config="lorasae.dictcompare.config:DictionariesConfig",
        run="lorasae.dictcompare.comparison:main",
        table="lorasae.dictcompare.table:print_comparison",
        figure="lorasae.dictcompare.figure:plot_comparison",
        demo_stage="lorasae.dictcompare.suite:demo_stage",
        order=55,
        dictionaries="any",
    ),
)
