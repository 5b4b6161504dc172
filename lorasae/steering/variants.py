"""Settings variants of the steering outputs (issue 25): each of the three steps names its output by the
settings that differ from the scripts' defaults, its own and those of the step it built on (the positives
for tuning; the tuning record for the evaluation), so a demo-size run and a default run never share a file:

- `datasets/latent_<N>[__<variant>].json` (positives, `make_positive_examples.py`),
- `results/latent_<N>_alpha[__<variant>].json` (the tuning record, `tune_alpha.py`),
- `results/<SAE and adapter>[__<variant>]/latent_<N>.json` and `distributions/<N>[__<variant>]/` (`run_eval.py`).

Each output's run record holds its variant and the settings off their defaults (`off_default`); a later
step finds the output it builds on through those records (`find_upstream`): of the same model and SAE,
made with the same shared settings where one exists, then by `eval_identity.pick_result` (the default
settings first, else the newest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from lorasae.eval_identity import Found, pick_result
from lorasae.paths import name_variant, nondefault_settings, portable
from lorasae.steering.args import SteeringArgs

# settings that never enter a steering output's name: the model, the SAE, the latent and the adapter are
# named by the output's folder and file; the others do not change its numbers
NOT_IN_NAME = frozenset(
    {"device", "wandb", "model_type", "model", "sae", "layer", "neuron", "adapter", "overwrite"}
    | {"concurrency", "max_retries", "llm_base_url"}
)
SHORT_NAMES = {
    "num_negatives": "neg", "max_snippets": "snippets", "num_examples": "pos", "grid": "grid",
    "mode": "mode", "negatives": "negset", "tuning_fraction": "tune", "batch_size": "bs", "max_length": "len",
    "seed": "seed", "dataset": "data", "dtype": "dtype", "alpha": "alpha", "confidence": "conf",
    "max_negative_drop": "drop", "tuning": "tuning", "from_corpus": "corpus", "description": "desc",
    "words": "words", "per_call": "percall", "max_calls": "calls", "llm_model": "llm",
}  # fmt: skip
TUNE_ACCUMULATED = frozenset({"alpha", "tuning", "grid", "max_negative_drop", "mode"})
"""Settings the tuning record accumulates (every alpha evaluated, per mode and split; the choice redone
with the budget given): they do not name it."""
SHARED = tuple(f.name for f in fields(SteeringArgs) if f.name not in NOT_IN_NAME | TUNE_ACCUMULATED)
"""Settings all three scripts take: an upstream output made with other values of these is used only when
none made with the same values exists."""


def off_default(config: SteeringArgs, ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The settings of `config` that differ from its script's defaults (its class's), less `ignore`."""
    return nondefault_settings(vars(config), vars(type(config)()), NOT_IN_NAME | ignore)


def step_variant(
    config: SteeringArgs, upstream: Mapping[str, Any] | None = None, ignore: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], str]:
    """(settings off their defaults, variant) of a step: those of the output it builds on (`upstream`,
    its record's `off_default`), then its own (less `ignore`)."""
    merged = {**(upstream or {}), **off_default(config, ignore)}
    return merged, name_variant(merged, SHORT_NAMES)


def recorded_off_default(item: Found) -> dict[str, Any]:
    """The settings off their defaults an output's record names ({} for a record-less one)."""
    if item.record is None:
        return {}
    return dict(item.record.get("settings", {}).get("off_default") or {})


def find_upstream(items: Sequence[Found], sae_source: str, config: SteeringArgs, what: str) -> Found | None:
    """The output a step builds on: of this SAE (record-less ones count), made with the same shared
    settings (`SHARED`) where one is, else any; then `pick_result`'s rule."""
    source = portable(sae_source) if Path(sae_source).expanduser().exists() else sae_source
    mine = [i for i in items if i.record is None or source in (i.record.get("sae_sources") or [])]
    settings = {k: getattr(config, k) for k in SHARED}
    same = [
        i
        for i in mine
        if i.record is not None
        and all(i.record.get("settings", {}).get(k, settings[k]) == settings[k] for k in SHARED)
    ]
    return pick_result(same or mine, what)
