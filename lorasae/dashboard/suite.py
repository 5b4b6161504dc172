"""The latent dashboards (static HTML) as a suite of the registry (`lorasae.evals`)."""

from __future__ import annotations

from lorasae.evals.shape import EvalSuite

SUITES = (
    EvalSuite(
        "dashboards",
        "static HTML pages of SAE latents before and after the LoRA adapter",
        config="lorasae.dashboard.run:DashboardArgs",
        run="lorasae.dashboard.run:run_dashboard",
        figure="lorasae.dashboard.run:write_pages",
        demo_stage="lorasae.dashboard.run:demo_stage",
        order=60,
        dictionaries="encoding",
    ),
)
