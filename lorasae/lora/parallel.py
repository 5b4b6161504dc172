"""Several LoRA runs at once, in processes of their own (`python -m lorasae.lora.parallel <config>...`).

A LoRA step on a small model (one 128-token sequence through the built-in model) is too small for two
CPU threads to share: the demo's five runs from TopK checkpoints took 100 CPU s in 51 s at two threads,
where one thread does the same run in half the CPU time. Two one-thread processes, each taking every
other run, finish them in about half the time of one process; the sweep's shards do the same
(`lorasae.sweep.shards`; the process runner is `lorasae.core.processes`). Each run's outputs and `results.csv` row are
written as `train_lora.py` writes them (concurrent writers take turns on its lock)."""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lorasae.lora.config import TrainLoraConfig


def worker_groups(count: int, workers: int) -> list[list[int]]:
    """The run indices each worker takes: every `workers`-th run, no empty group."""
    return [group for group in (list(range(i, count, workers)) for i in range(max(1, workers))) if group]


def run_parallel(cfgs: Sequence[TrainLoraConfig], workers: int) -> None:
    """Run `cfgs` in `workers` processes at once (the available cores split between them); with one
    worker or one run, in this process."""
    from lorasae.lora.run import main_many

    if workers <= 1 or len(cfgs) <= 1:
        main_many(list(cfgs))
        return
    from lorasae.core.atomic import atomic_write_json
    from lorasae.core.processes import run_processes

    with tempfile.TemporaryDirectory(prefix="lorasae-lora-") as folder:
        files = []
        for i, cfg in enumerate(cfgs):
            files.append(Path(folder) / f"run{i}.json")
            atomic_write_json(files[-1], dataclasses.asdict(cfg))
        commands = [
            [sys.executable, "-m", "lorasae.lora.parallel", *(str(files[i]) for i in group)]
            for group in worker_groups(len(cfgs), workers)
        ]
        run_processes(commands, "LoRA worker")


def worker(config_files: Sequence[str]) -> None:
    """One worker: the runs of `config_files` (each a `train_lora.py --config_file`), in order, on one
    session where they share the model."""
    from lorasae.core.cli import parse
    from lorasae.lora.run import main_many

    main_many([parse(TrainLoraConfig, ["--config_file", file]) for file in config_files])


if __name__ == "__main__":
    from lorasae.core.errors import main_guard

    sys.exit(main_guard(worker)(sys.argv[1:]))
