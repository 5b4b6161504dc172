"""The four settings a benchmark run compares (`Combination`, `ALL_FOUR`: base or LoRA model, SAE spliced or
not) and where their results live: `eval/benchmarks/results/<model>_<peft|base>_<sae|no_sae>.json`, and
the built-in lm-eval tasks generated beside them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorasae.paths import eval_dir, sanitize


@dataclass(frozen=True)
class Combination:
    """One of the four settings: base or LoRA model, SAE spliced or not."""

    peft: bool
    sae: bool

    @property
    def model_type(self) -> str:
        return "peft" if self.peft else "base"

    @property
    def sae_label(self) -> str:
        return "sae" if self.sae else "no_sae"

    @property
    def label(self) -> str:
        return f"{self.model_type}_{self.sae_label}"


ALL_FOUR: tuple[Combination, ...] = (
    Combination(peft=False, sae=False),
    Combination(peft=False, sae=True),
    Combination(peft=True, sae=False),
    Combination(peft=True, sae=True),
)


# --- paths ----------------------------------------------------------------------------------------


def results_dir(base: Path | None = None) -> Path:
    return eval_dir("benchmarks", base) / "results"


def results_path(model: str, combination: Combination, base: Path | None = None) -> Path:
    """`eval/benchmarks/results/<model>_<peft|base>_<sae|no_sae>.json` (`<model>`: the short model key)."""
    return results_dir(base) / f"{sanitize(model)}_{combination.label}.json"


def builtin_tasks_dir(seed: int = 0, n_docs: int | None = None, base: Path | None = None) -> Path:
    """Where the built-in lm-eval tasks of a world are generated (beside the results computed on them)."""
    name = f"world_{seed}" + (f"_{n_docs}docs" if n_docs is not None else "")
    return results_dir(base) / "builtin_tasks" / name
