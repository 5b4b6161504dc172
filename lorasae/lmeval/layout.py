"""The four settings a benchmark run compares (`Combination`, `ALL_FOUR`: base or LoRA model, SAE spliced or
not) and where their results live: `eval/benchmarks/results/[<slot folder>/]<model>_<peft|base>_<sae|no_sae>
[__<variant>].json` (`Slot`: which SAE and adapter, named only when not the default ones; `variant`: the
settings off their defaults), and the built-in lm-eval tasks generated beside them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorasae.core.paths import eval_dir, name_variant, sanitize, with_variant


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


@dataclass(frozen=True)
class Slot:
    """Which SAE and adapter a run's results are of, as their paths say (issue 25): '' for the SAE and
    the adapter the script picks by default (the store's `find_sae` and `default_adapter`, what
    `run_benchmarks.py --model <m> --all_four` evaluates), whose results keep the original names; else
    the label of the SAE (`pairing.sae_label`) or of the adapter (`evals.identity.adapter_label`), each
    unique to its SAE sources or adapter."""

    sae: str = ""
    adapter: str = ""

    def folder(self, combination: Combination) -> str:
        """The results folder of `combination` under `results_dir`: `sae-<label>`, `adapter-<label>` or
        `sae-<label>_adapter-<label>` (the naming rule's `<name>-<value>` joined by `_`) of the parts
        the combination uses and that are not the default; '' (the results folder itself) otherwise.
        `base_no_sae` uses neither: every run shares it."""
        parts = [
            ("sae", self.sae if combination.sae else ""),
            ("adapter", self.adapter if combination.peft else ""),
        ]
        return "_".join(f"{name}-{label}" for name, label in parts if label)


DEFAULT_SLOT = Slot()
"""The default SAE and adapter: the original names."""


# --- paths ----------------------------------------------------------------------------------------


def results_dir(base: Path | None = None) -> Path:
    return eval_dir("benchmarks", base) / "results"


def settings_variant(limit: float | None = None, num_fewshot: int | None = None,
                     max_length: int | None = None, tasks: list[str] | None = None,
                     dtype: str | None = None, bootstrap_iters: int | None = None) -> str:  # fmt: skip
    """The settings off their defaults that change a benchmark's numbers, as they go into result names
    (`limit-50`, `fewshot-5`, `maxlen-512`, `tasks-…`, `dtype-…`, `bootstrap-…`, joined by `_`); empty for a
    full run with the defaults, whose names stay the original's. Pass only what differs from the defaults
    (None: the default)."""
    given = {"limit": limit, "num_fewshot": num_fewshot, "max_length": max_length,
             "tasks": "+".join(tasks) if tasks else None, "dtype": dtype, "bootstrap_iters": bootstrap_iters}  # fmt: skip
    nondefault = {k: v for k, v in given.items() if v is not None}
    short = {"limit": "limit", "num_fewshot": "fewshot", "max_length": "maxlen", "tasks": "tasks",
             "dtype": "dtype", "bootstrap_iters": "bootstrap"}  # fmt: skip
    return name_variant(nondefault, short)


def results_path(
    model: str,
    combination: Combination,
    base: Path | None = None,
    variant: str = "",
    slot: Slot = DEFAULT_SLOT,
) -> Path:
    """`eval/benchmarks/results/[<slot folder>/]<model>_<peft|base>_<sae|no_sae>[__<variant>].json`
    (`<model>`: the short model key; `variant`: `settings_variant`, so a `--limit` run never replaces a
    full one; `slot`: the SAE and adapter when not the default ones, `Slot.folder`, so another SAE's or
    adapter's run never replaces the default one's)."""
    name = with_variant(f"{sanitize(model)}_{combination.label}", variant)
    folder = slot.folder(combination)
    return (results_dir(base) / folder if folder else results_dir(base)) / f"{name}.json"


def picked_variant(model: str, base: Path | None = None, slot: Slot = DEFAULT_SLOT) -> str:
    """The settings variant of the model's results (of `slot`'s SAE and adapter: by default the default
    ones) a reader shows, by `eval_identity.pick_result` (the default settings first, else the newest; ''
    when there are none). Results whose records predate named variants have theirs read from the file
    name (`results_path` has always carried it)."""
    from lorasae.core.result_choice import found, pick_result

    files = []
    for c in ALL_FOUR:
        stem = f"{sanitize(model)}_{c.label}"
        folder = results_path(model, c, base, slot=slot).parent
        for p in folder.glob(f"{stem}*.json"):
            name = p.name.removesuffix(".json")
            if not p.name.endswith(".run.json") and (name == stem or name.startswith(f"{stem}__")):
                files.append(found(p, name.removeprefix(stem).removeprefix("__")))
    chosen = pick_result(files, f"benchmark results of {model}")
    return chosen.variant if chosen is not None else ""


def builtin_tasks_dir(seed: int = 0, n_docs: int | None = None, base: Path | None = None) -> Path:
    """Where the built-in lm-eval tasks of a world are generated (beside the results computed on them)."""
    name = f"world_{seed}" + (f"_{n_docs}docs" if n_docs is not None else "")
    return results_dir(base) / "builtin_tasks" / name
