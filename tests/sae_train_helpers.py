"""Shared setup of the train_sae tests: a tiny random Llama + character tokenizer saved to disk (loadable
by name like any model), a local jsonl corpus, and a fast config on them."""

from __future__ import annotations

import json
import random
from pathlib import Path

from conftest import make_char_tokenizer, make_tiny_model

from lorasae.train.config import TrainSaeConfig

WORDS = "the cat sat on a mat and the dog ran to it while birds sang over green hills".split()


def write_tiny_world(folder: Path) -> tuple[Path, Path]:
    """(model folder, jsonl dataset) under `folder`; the model is named `model` in output paths."""
    model_dir = folder / "model"
    model = make_tiny_model("llama", n_layers=3, d=32)
    tokenizer = make_char_tokenizer()
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rng = random.Random(0)
    data = folder / "data.jsonl"
    with open(data, "w", encoding="utf-8") as handle:
        for _ in range(1500):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 25)))
            handle.write(json.dumps({"text": text}) + "\n")
    return model_dir, data


def fast_args(model_dir: Path, data: Path, **overrides: object) -> list[str]:
    """Command-line flags for a run of 60 steps of 2 × 32 tokens on the tiny random model, validated every 10%."""
    settings: dict[str, object] = {
        "device": "cpu",
        "model": str(model_dir),
        "dataset": str(data),
        "layer": 1,
        "num_train_tokens": 3840,
        "ctx_len": 32,
        "batch_size": 2,
        "num_val_tokens": 128,
        "val_batch_size": 4,
        "k": 4,
        "expansion_factor": 4,
        "log_every_steps": 5,
        "eval_every_pct": 10,
    }
    settings.update(overrides)
    args: list[str] = []
    for key, value in settings.items():
        if value is True:
            args.append(f"--{key}")
        elif value is not False and value is not None:
            args += [f"--{key}", str(value)]
    return args


def fast_config(model_dir: Path, data: Path, **overrides: object) -> TrainSaeConfig:
    from lorasae.core.cli import parse

    return parse(TrainSaeConfig, fast_args(model_dir, data, **overrides))
