"""Output paths of the grokking world (`lorasae/grok_world/`, `lorasae/grok/`: the train-SAE project's
experiments): the featurizing model, its checkpoints and its data; the rest of the project's paths are
`lorasae/core/paths.py`, whose root and name rules these use."""

from __future__ import annotations

import re
from pathlib import Path

from lorasae.core.paths import _root, sanitize


def grok_model_dir(run: str, base: Path | None = None) -> Path:
    """`saved_models/grok/<run>/final/`: the trained featurizing model (transformers folder)."""
    return _root(base) / "saved_models" / "grok" / sanitize(run) / "final"


def grok_checkpoint_dir(run: str, step: int, base: Path | None = None) -> Path:
    """`saved_models/grok/<run>/checkpoints/step_<N>/`: model, tokenizer, optimizer state, state.json."""
    return _root(base) / "saved_models" / "grok" / sanitize(run) / "checkpoints" / f"step_{step}"


_GROK_MODEL_FOLDER = re.compile(
    r"saved_models/grok/(?P<run>[^/]+)/(?:checkpoints/)?(?P<which>final|step_\d+)/?$"
)


def grok_model_key(folder: str) -> str | None:
    """`grok-<run>-<final|step_N>` for a grokking run's model folder (`grok_model_dir`,
    `grok_checkpoint_dir`), so SAEs trained on its checkpoints do not share one `saved_saes/step_N/`;
    None for any other path."""
    m = _GROK_MODEL_FOLDER.search(Path(folder).as_posix())
    return f"grok-{m['run']}-{m['which']}" if m else None


def grok_data_dir(run: str, base: Path | None = None) -> Path:
    """`data/grok/<run>/`: curves, SAE metrics and the clamping results of a grokking run."""
    return _root(base) / "data" / "grok" / sanitize(run)
