"""The built-in model's own files in `saved_models/tiny/` (the folder also holds the tiny model's adapters
and runs, which a rebuild never touches): which files they are, what a folder lacks, and moving a fresh
build's files into an existing folder."""

from __future__ import annotations

import os
from pathlib import Path

MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "world.json",
    "run.json",
)
"""The files a build writes into `tiny/` (the model's own); nothing else in the folder is touched."""


def missing_files(folder: Path) -> str:
    if not folder.exists():
        return "does not exist"
    lacking = [f for f in ("config.json", "model.safetensors") if not (folder / f).is_file()]
    return f"has no {' and no '.join(lacking)}"


def move_model_files(built: Path, target: Path) -> None:
    """Move a built model's files from `built` into the existing `target`, replacing the old model files:
    `config.json` is removed first and moved in last, so a crash in between leaves a folder that the next
    call sees as incomplete (and rebuilds), never a mix of old and new files counted as complete."""
    (target / "config.json").unlink(missing_ok=True)  # the model's own file: the old, partial one
    names = sorted(p.name for p in built.iterdir())
    for name in [n for n in names if n != "config.json"] + ["config.json"]:
        source = built / name
        if source.is_dir():  # a build writes files only; keep any folder for the caller to see
            raise RuntimeError(f"{source}: unexpected folder in a built model")
        os.replace(source, target / name)
