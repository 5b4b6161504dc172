"""The interpretability analysis (activation distances, per-token loss) as a suite of the registry
(`lorasae.evals`)."""

from __future__ import annotations

from lorasae.evals.shape import EvalSuite

SUITES = (
    EvalSuite(
        "interp",
        "activations after the SAE and per-token loss, base vs LoRA (the original's interp_analysis)",
        config="lorasae.interp.run:InterpArgs",
        run="lorasae.interp.run:run_interp",
        table="lorasae.interp.run:format_tables",
        figure="lorasae.interp.plots:plot_interp",
        demo_stage="lorasae.interp.run:demo_stage",
        order=40,
        dictionaries="any",
    ),
)
