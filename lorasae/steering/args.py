"""The flags shared by the three steering scripts (`SteeringArgs`) and where the steering evaluation
(SPEC §4.2) writes its outputs.

The steering evaluation end to end: load the model, its SAE and the rank-1 `after` LoRA adapter
(`context.py`); pick the latent (`latent.py`); make positive examples (`positives.py`); tune alpha on
the tuning split (`tune.py`, with `evaluator.py`); evaluate on the test split, write the results JSON,
print the table and draw the histograms (`final_eval.py`).

Outputs (under `eval/steering/`): `datasets/latent_<N>.json` (positives), `datasets[/builtin]/<set>.json`
(negatives), `results/latent_<N>_alpha.json` (tuning record), `results/<SAE and adapter>/latent_<N>.json`
(evaluation), `distributions/<N>/<set>.png|pdf` (histograms); each name followed by `__<variant>` when
settings differ from the scripts' defaults (`variants.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorasae.core.cli import CommonArgs, SaeChoiceArgs, field
from lorasae.core.paths import eval_dir, with_variant
from lorasae.model.data import default_dataset
from lorasae.store.adapter_choice import adapter_help
from lorasae.world.sizes import is_builtin_size


@dataclass
class SteeringArgs(SaeChoiceArgs, CommonArgs):
    """Flags shared by the three steering scripts."""

    neuron: int | None = None
    """SAE latent to steer. Default: the latent that best separates the built-in world's science documents
    from its other domains (the choice is printed)."""

    adapter: str | None = field(
        default=None,
        help=adapter_help(
            "LoRA adapter folder (PEFT format). Default: the default adapter among the rank-1 `after` "
            "adapters (layers L+1…n-1) saved for the SAE."
        ),
    )

    mode: str = "multiplicative"
    """Steering edit: multiplicative (h + alpha (h.d) d, the paper's) or additive (h + alpha d)."""

    negatives: str = "auto"
    """Negative sets: hub (the original's five datasets), builtin (the built-in world's domains) or auto
    (builtin for the built-in model or dataset, hub otherwise)."""

    num_negatives: int = 100
    """Examples per negative set (the paper: 500 negatives over five sets)."""

    tuning_fraction: float = 0.3
    """Fraction of the positive examples used for tuning alpha; the rest are the test positives."""

    batch_size: int = 16
    """Examples per forward pass."""

    max_length: int = 64
    """Tokens per example (longer examples are truncated)."""

    overwrite: bool = False
    """Redo a step whose output exists with a run record of the same run (the same SAE, adapter and their
    weights, model and settings; by default such an identical rerun is skipped, saying so); for the
    positives, also start the file afresh instead of appending new examples to it."""

    @property
    def builtin_model(self) -> bool:
        """The built-in model, by name or as a folder holding its world.json."""
        return (
            is_builtin_size(self.model_name) or (Path(self.model_name).expanduser() / "world.json").is_file()
        )

    @property
    def corpus(self) -> str:
        """Text to mine positives from: --dataset, else the built-in corpus for the built-in model and
        the project's default (RedPajama) otherwise."""
        if self.dataset:
            return self.dataset
        return "builtin" if self.builtin_model else default_dataset(self.model_name)

    @property
    def negatives_kind(self) -> str:
        if self.negatives == "auto":
            return "builtin" if self.builtin_model or self.corpus == "builtin" else "hub"
        if self.negatives not in ("builtin", "hub"):
            raise ValueError(f"--negatives must be auto, builtin or hub, got {self.negatives!r}")
        return self.negatives


# --- paths ----------------------------------------------------------------------------------------


def positives_path(latent: int, base: Path | None = None, variant: str = "") -> Path:
    return eval_dir("steering", base) / "datasets" / f"{with_variant(f'latent_{latent}', variant)}.json"


def alpha_record_path(latent: int, base: Path | None = None, variant: str = "") -> Path:
    return eval_dir("steering", base) / "results" / f"{with_variant(f'latent_{latent}_alpha', variant)}.json"


def results_path(latent: int, base: Path | None = None, slot: str = "") -> Path:
    """`eval/steering/results/[<slot>/]latent_<N>.json`; `slot` names the SAE and adapter
    (`lorasae.evals.identity.source_slot`) and the settings variant, so one latent of two SAEs (or adapters,
    or settings) never shares a file."""
    folder = eval_dir("steering", base) / "results"
    return (folder / slot if slot else folder) / f"latent_{latent}.json"


def distributions_dir(latent: int, base: Path | None = None, variant: str = "") -> Path:
    return eval_dir("steering", base) / "distributions" / with_variant(str(latent), variant)


__all__ = [
    "SteeringArgs",
    "alpha_record_path",
    "distributions_dir",
    "positives_path",
    "results_path",
]
