"""The registry of every evaluation suite: the `SUITES` of each `lorasae/<package>/suite.py`, found by
looking (adding an eval touches its own folder only), in their `order`. `run_eval.py --evals`, the
SAE-Bench comparison table and the demo's evaluation stages (and their count) are read from here."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable

import lorasae
from lorasae.evals.shape import DemoContext, EvalSuite, Stage, resolve


@functools.lru_cache(maxsize=1)
def suites() -> tuple[EvalSuite, ...]:
    """Every suite, by `order` then name."""
    found: list[EvalSuite] = []
    for info in pkgutil.iter_modules(lorasae.__path__):
        name = f"lorasae.{info.name}.suite"
        if info.ispkg and importlib.util.find_spec(name) is not None:
            found.extend(importlib.import_module(name).SUITES)
    names = [s.name for s in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(
            f"lorasae/evals/registry.py: suites named twice: {twice}; rename one in its suite.py"
        )
    return tuple(sorted(found, key=lambda s: (s.order, s.name)))


def family(name: str) -> tuple[EvalSuite, ...]:
    """The suites of one family (e.g. "saebench": SAEBench's eight), in order."""
    return tuple(s for s in suites() if s.family == name)


def suite(name: str) -> EvalSuite:
    for s in suites():
        if s.name == name:
            return s
    raise LookupError(
        f"lorasae/evals/registry.py: no suite {name!r}; choose from {[s.name for s in suites()]}"
    )


def demo_stage_refs() -> list[str]:
    """The demo's evaluation stages in order: each distinct `demo_stage` of the suites, once."""
    return list(dict.fromkeys(s.demo_stage for s in suites() if s.demo_stage))


def demo_beside_refs() -> set[str]:
    """The demo stages that may run beside the others (`EvalSuite.demo_beside`)."""
    return {s.demo_stage for s in suites() if s.demo_stage and s.demo_beside}


def demo_stage_functions() -> list[Callable[[DemoContext], Stage]]:
    """`demo_stage_refs`, loaded."""
    return [resolve(ref) for ref in demo_stage_refs()]


__all__ = ["demo_beside_refs", "demo_stage_functions", "demo_stage_refs", "family", "suite", "suites"]
