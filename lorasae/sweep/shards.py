"""Several shards of one sweep at once on one machine: `python -m lorasae.sweep --config_file <cfg>
--shard i/n` for i = 0 … n−1, each in its own process with its share of the CPU threads, the same
command a multi-GPU box runs by hand with one GPU per shard (sweep.py's docstring).

Why processes: a LoRA step of a small model is a long chain of small ops whose cost is per-op overhead
in one thread (on the built-in model a run takes 0.12 train min with two threads and 0.13 with one), so
two one-thread shards on two cores finish a sweep in about half the time of one process. Each shard
writes the usual outputs (results.csv rows are appended under a lock) and the sweep manifest; the
lines of every shard are printed as they come, prefixed with the shard.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from lorasae.core import paths
from lorasae.core.atomic import atomic_write_json
from lorasae.core.processes import run_processes
from lorasae.sweep.config import SweepConfig, sweep_variant


def shard_config_path(cfg: SweepConfig) -> Path:
    """`data/sweeps/<model>[__<variant>].config.json`: the config every shard reads (beside the sweep's
    manifest; `variant`: `sweep_variant`, the same for every shard)."""
    from lorasae.model.load import model_key

    return paths.sweep_config(model_key(cfg.model_name), variant=sweep_variant(cfg))


def shard_command(config_file: Path, shard: str) -> list[str]:
    """The command line of one shard (`shard`: "i/n")."""
    return [
        sys.executable,
        "-m",
        "lorasae.sweep",
        "--config_file",
        str(config_file),
        "--shard",
        shard,
    ]


def run_shards(cfg: SweepConfig, workers: int, threads: int | None = None) -> None:
    """Run the sweep `cfg` as `workers` shards at once (each process gets `threads` CPU threads; default:
    the available cores split evenly, at least one). Raises if any shard fails; on Ctrl-C the shards are
    interrupted (each stops at a step boundary) before this re-raises."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    config_file = shard_config_path(cfg)
    atomic_write_json(config_file, dataclasses.asdict(dataclasses.replace(cfg, shard="0/1")))
    commands = [shard_command(config_file, f"{i}/{workers}") for i in range(workers)]
    run_processes(commands, "sweep shard", threads)
