"""SAEBench's eight evals as suites of the registry (`lorasae.evals`): the one list of their names
(`run_eval.py --evals`), settings, runners and headline numbers (the comparison table's columns); one demo
stage and one figure for all eight."""

from __future__ import annotations

from lorasae.evals.shape import DemoContext, EvalSuite, Headline, Stage

_M = "lorasae.saebench"
_COMMON = dict(
    family="saebench",
    table=f"{_M}.comparison:comparison_table",
    figure=f"{_M}.comparison:comparison_figure",
    demo_stage=f"{_M}.suite:demo_stage",
)


def _h(*rows: tuple[str, str, str]) -> tuple[Headline, ...]:
    return tuple(Headline(*row) for row in rows)


SUITES: tuple[EvalSuite, ...] = (
    EvalSuite(
        "core", "reconstruction, sparsity and the model's loss with the SAE spliced",
        f"{_M}.core:CoreEvalConfig", f"{_M}.core:run_core",
        _h(
            ("sparsity", "l0", "L0"),
            ("reconstruction_quality", "explained_variance", "explained variance"),
            ("reconstruction_quality", "cossim", "cosine sim"),
            ("model_performance_preservation", "ce_loss_score", "CE loss score"),
            ("model_performance_preservation", "ce_loss_with_sae", "CE with SAE"),
            ("model_performance_preservation", "ce_loss_without_sae", "CE clean"),
            ("model_behavior_preservation", "kl_div_score", "KL score"),
            ("misc_metrics", "frac_dead", "dead fraction"),
            ("misc_metrics", "frac_dense", "dense fraction"),
        ),
        order=10, **_COMMON,
    ),
    EvalSuite(
        "sparse_probing", "linear probes on the top SAE latents vs on the model's activations",
        f"{_M}.probing:SparseProbingEvalConfig", f"{_M}.probing:run_sparse_probing",
        _h(
            ("llm", "llm_test_accuracy", "LLM probe acc"),
            ("sae", "sae_top_1_test_accuracy", "SAE top-1 acc"),
            ("sae", "sae_top_2_test_accuracy", "SAE top-2 acc"),
            ("sae", "sae_top_5_test_accuracy", "SAE top-5 acc"),
            ("sae", "sae_test_accuracy", "SAE all-latents acc"),
        ),
        order=11, **_COMMON,
    ),
    EvalSuite(
        "scr", "spurious correlation removal by ablating latents",
        f"{_M}.scr_tpp:ScrAndTppEvalConfig", f"{_M}.scr_tpp:run_scr",
        _h(
            ("scr_metrics", "scr_metric_threshold_2", "SCR top-2"),
            ("scr_metrics", "scr_metric_threshold_10", "SCR top-10"),
            ("scr_metrics", "scr_metric_threshold_20", "SCR top-20"),
        ),
        order=12, **_COMMON,
    ),
    EvalSuite(
        "tpp", "targeted probe perturbation by ablating latents",
        f"{_M}.scr_tpp:ScrAndTppEvalConfig", f"{_M}.scr_tpp:run_tpp",
        _h(
            ("tpp_metrics", "tpp_threshold_2_total_metric", "TPP top-2"),
            ("tpp_metrics", "tpp_threshold_10_total_metric", "TPP top-10"),
            ("tpp_metrics", "tpp_threshold_20_total_metric", "TPP top-20"),
        ),
        order=13, **_COMMON,
    ),
    EvalSuite(
        "absorption", "feature absorption on first-letter tasks",
        f"{_M}.absorption:AbsorptionEvalConfig", f"{_M}.absorption:run_absorption",
        _h(
            ("mean", "mean_absorption_fraction_score", "absorption fraction"),
            ("mean", "mean_full_absorption_score", "full absorption"),
        ),
        order=14, **_COMMON,
    ),
    EvalSuite(
        "autointerp", "latent explanations scored by an LLM judge",
        f"{_M}.autointerp:AutoInterpEvalConfig", f"{_M}.autointerp:run_autointerp",
        _h(("autointerp", "autointerp_score", "autointerp score")),
        order=15, offline=False, **_COMMON,
    ),
    EvalSuite(
        "ravel", "RAVEL: disentangling an entity's attributes",
        f"{_M}.ravel:RAVELEvalConfig", f"{_M}.ravel:run_ravel",
        _h(
            ("ravel", "disentanglement_score", "disentanglement"),
            ("ravel", "cause_score", "cause"),
            ("ravel", "isolation_score", "isolation"),
        ),
        order=16, **_COMMON,
    ),
    EvalSuite(
        "unlearning", "unlearning a subject by clamping latents",
        f"{_M}.unlearning:UnlearningEvalConfig", f"{_M}.unlearning:run_unlearning",
        _h(("unlearning", "unlearning_score", "unlearning score")),
        order=17, **_COMMON,
    ),
)  # fmt: skip

EVALS: tuple[str, ...] = tuple(s.name for s in SUITES)
"""SAEBench's eight, in SAEBench's order: `run_eval.py --evals` choices (`all`: every one)."""

OFFLINE: tuple[str, ...] = tuple(s.name for s in SUITES if s.offline)
"""The ones that need no LLM judge (the demo runs these; autointerp too when $OPENAI_API_KEY is set)."""

HEADLINE: dict[str, list[tuple[str, str, str]]] = {
    s.name: [(h.category, h.key, h.label) for h in s.headline] for s in SUITES
}
"""Each eval's headline numbers (category, key, label): the comparison table's columns."""


def demo_stage(ctx: DemoContext) -> Stage:
    """`make demo`'s SAE-Bench stage (`demo_evals.saebench_stage`)."""
    from lorasae.demo_evals import saebench_stage

    return saebench_stage(ctx.device, ctx.layer, ctx.seed, ctx.force, ctx.sizes)


__all__ = ["EVALS", "HEADLINE", "OFFLINE", "SUITES", "demo_stage"]
