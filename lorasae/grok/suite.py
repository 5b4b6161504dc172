"""The grokking study (seed train-SAE) as a suite of the registry (`lorasae.evals`); `make grok` runs it,
not the demo."""

from __future__ import annotations

from lorasae.evals.shape import EvalSuite

SUITES = (
    EvalSuite(
        "grokking",
        "SAEs before and after a small transformer groks modular arithmetic; clamping latents",
        config="lorasae.grok.study:GrokStudyConfig",
        run="lorasae.grok.study:run_study",
        figure="lorasae.grok.figures:plot_accuracy",
        order=70,
    ),
)
