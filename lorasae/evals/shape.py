"""The one shape of an evaluation suite (`EvalSuite`): its name, settings class, run function, headline
numbers, figure and demo stage, each named as `"module:attribute"` so that listing the suites imports
nothing heavy (`resolve` loads one when it is used). Each eval declares its suites in its own folder
(`lorasae/<eval>/suite.py`, a tuple `SUITES`); `lorasae.evals.registry` finds them.

A demo stage is a function `(DemoContext) -> Stage` (`(title, done, fn)` for `demo_stages.Stages.run`),
called only when its turn comes (its `done` check may need the stages before it)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Stage = tuple[str, bool, Callable[[], object]]
DEMO_MODEL = "tiny"
"""The model `make demo` evaluates (the built-in one)."""


@dataclass(frozen=True)
class EvalSizes:
    """How much of each eval the demo runs (the README commands run the scripts' defaults)."""

    steering_negatives: int = 50
    """Examples per negative set in the steering evaluation (the script's default: 100)."""
    steering_snippets: int = 5_000
    """Corpus snippets scored when mining the positives (default 20,000)."""
    steering_grid: str = "0.5,1,2,4,8"
    """Alphas tuned (default 0.25 … 32)."""
    benchmark_limit: float | None = 100
    """Documents per benchmark task (None: every document; the built-in tasks have 69–275)."""
    saebench_evals: str = "offline"
    """SAE-Bench evals: offline (every eval that needs no LLM judge; autointerp too when $OPENAI_API_KEY is
    set) or a comma-separated list."""
    dark_matter_tokens: int = 24_000
    """Tokens of each SAEInfo (half fit the linear map, half score it)."""
    dark_matter_pursuit_tokens: int = 1_000
    """Held-out tokens of gradient pursuit."""
    dark_matter_error_sae_steps: int = 150
    """Steps of each SAE trained on an error component."""
    dark_matter_ce_chunks: int = 16
    """Held-out chunks of the downstream-CE evaluation."""


@dataclass(frozen=True)
class Headline:
    """One headline number of a result JSON: `eval_result_metrics[category][key]`, shown as `label`."""

    category: str
    key: str
    label: str


@dataclass(frozen=True)
class DemoContext:
    """What every demo stage of an eval gets from `make demo` (one signature for all of them)."""

    device: str
    layer: int
    seed: int
    force: bool
    sizes: EvalSizes
    """How much of each eval the demo runs."""
    k: int
    """The main SAE's k."""
    n_layers: int
    rank: int
    sweep_k: tuple[int, ...]
    sae_tokens: int
    lora_examples: int
    checkpoints: tuple[int, ...] = (20, 50, 80, 100)
    """The main TopK SAE's checkpoints (percent) that the timing experiment adapts."""

    @property
    def every_layer(self) -> str:
        """The LoRA layer span `0-<n-1>` of the demo's main adapters (the paper's: every layer)."""
        return f"0-{self.n_layers - 1}"


@dataclass(frozen=True)
class EvalSuite:
    """One evaluation: what `run_eval.py --evals`, the comparison tables, the figures and the demo need."""

    name: str
    """Its name (SAEBench's eval names are `run_eval.py --evals` choices)."""
    title: str
    """One line: what it measures."""
    config: str
    """`module:Class` of its settings."""
    run: str
    """`module:function` that runs it."""
    headline: tuple[Headline, ...] = ()
    """Its headline numbers (the comparison table's columns)."""
    table: str | None = None
    """`module:function` printing its headline table."""
    figure: str | None = None
    """`module:function` drawing its figure."""
    demo_stage: str | None = None
    """`module:function` `(DemoContext) -> Stage`; suites sharing one (SAEBench's eight) are one stage."""
    order: int = 100
    """Its place in listings and in the demo (lower first)."""
    demo_beside: bool = False
    """Its demo stage may run in a one-thread process beside the stages before it (`lorasae.demo.beside`):
    it reads only what the training stages made and nothing after it reads its outputs until the figures."""
    family: str = ""
    """Suites run by one script and reported in one table ("saebench": SAEBench's eight); '' for itself."""
    offline: bool = True
    """Runs without network or an LLM judge (the demo runs the offline ones)."""
    dictionaries: str = "residual"
    """Which dictionaries it takes (`lorasae.sae.capabilities`): "any" (it uses the dictionary only
    through the splice), "encoding" (one layer; it encodes what the dictionary reads, a transcoder's MLP
    input included) or "residual" (a one-layer dictionary of the residual after its layer)."""

    def load(self, field_name: str) -> Any:
        """The object one of its `module:attribute` fields names."""
        ref = getattr(self, field_name)
        if not ref:
            raise LookupError(f"lorasae/evals/shape.py: suite {self.name!r} has no {field_name}")
        return resolve(ref)


def resolve(ref: str) -> Any:
    """The object `module:attribute` names."""
    module, _, attribute = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as err:
        raise LookupError(
            f"lorasae/evals/shape.py: {ref!r} names nothing ({err}); fix the suite's suite.py"
        ) from err


__all__ = ["DEMO_MODEL", "DemoContext", "EvalSizes", "EvalSuite", "Headline", "Stage", "resolve"]
