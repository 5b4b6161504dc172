"""`make demo`'s SAE-Bench stage: `eval/SAE-Bench/run_eval.py` on the base and the LoRA-merged model, at
the demo's sizes, done when the demo's own results exist (registered in `suite.py` as the eight suites' one
demo stage)."""

from __future__ import annotations

from lorasae.evals.shape import DEMO_MODEL, DemoContext, EvalSizes, Stage
from lorasae.saebench.suite import OFFLINE

MODEL = DEMO_MODEL


def demo_stage(ctx: DemoContext) -> Stage:
    """`make demo`'s SAE-Bench stage (`saebench_stage`)."""

    return saebench_stage(ctx.device, ctx.layer, ctx.seed, ctx.force, ctx.sizes)


def saebench_evals(spec: str = "offline") -> list[str]:
    import os

    from lorasae.core.llm import API_KEY_ENV

    if spec != "offline":
        return [name.strip() for name in spec.split(",") if name.strip()]
    return [*OFFLINE, "autointerp"] if os.environ.get(API_KEY_ENV) else list(OFFLINE)


def saebench_stage(device: str, layer: int, seed: int, force: bool, sizes: EvalSizes) -> Stage:
    """`eval/SAE-Bench/run_eval.py --model tiny --model_type base` and `--model_type peft` (the adapter the
    store picks for the main SAE: every layer, highest rank), at once in two one-thread processes on a
    multi-core CPU, else in turn; the comparison table and figure."""
    from lorasae.saebench.args import SaeBenchArgs, result_variant

    evals = saebench_evals(sizes.saebench_evals)

    def args(variant: str) -> SaeBenchArgs:
        return SaeBenchArgs(
            device=device,
            model=MODEL,
            model_variant=variant,
            evals=",".join(evals),
            seed=seed,
            layer=layer,
            overwrite=force,
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
        from lorasae.core.runtime import available_cpus, parse_device
        from lorasae.saebench.run import draw_comparison
        from lorasae.store import resolve_sae

        runs = [args(variant) for variant in ("base", "peft")]
        if parse_device(device).type == "cpu" and available_cpus() > 1:
            from lorasae.saebench.worker import run_in_processes

            run_in_processes(runs)  # one thread each, at once (lorasae/saebench/worker.py)
        else:
            from lorasae.saebench.run import run as run_eval

            for one in runs:
                run_eval(one)
        # README's figure under the plain name; the runs drew theirs named after the adapter
        tag = resolve_sae(MODEL, None, layer).tag
        draw_comparison(MODEL, None, tag, result_variant(args("base")), stem=f"saebench_{MODEL}")

    return f"SAE-Bench ({', '.join(evals)}) on the base and the LoRA-merged model", not force and done(), run
