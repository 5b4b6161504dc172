"""Evaluation suites: one shape (`shape.EvalSuite`) and one registry (`registry.suites`)."""

from lorasae.evals.registry import (
    demo_beside_refs,
    demo_stage_functions,
    demo_stage_refs,
    family,
    suite,
    suites,
)
from lorasae.evals.shape import DemoContext, EvalSuite, Headline, Stage, resolve

__all__ = [
    "DemoContext",
    "EvalSuite",
    "Headline",
    "Stage",
    "demo_beside_refs",
    "demo_stage_functions",
    "demo_stage_refs",
    "family",
    "resolve",
    "suite",
    "suites",
]
