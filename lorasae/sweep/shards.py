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
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import IO

from lorasae.core import paths
from lorasae.core.atomic import atomic_write_json
from lorasae.core.errors import LorasaeError
from lorasae.core.runtime import available_cpus
from lorasae.sweep.config import SweepConfig, sweep_variant

TAIL_LINES = 30  # lines of a failed shard's output repeated in the error


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


def _pump(stream: IO[str], prefix: str, tail: deque[str], lock: threading.Lock) -> None:
    for line in stream:
        tail.append(line.rstrip("\n"))
        with lock:
            print(f"{prefix}{line}", end="", flush=True)


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


def run_processes(commands: list[list[str]], what: str, threads: int | None = None) -> None:
    """Run `commands` (each `[python, -m, module, ...]`, the i-th called "<what> i/n") at once, each process
    with `threads` CPU threads (default: the available cores split evenly, at least one), their lines
    printed as they come, prefixed. Raises if any fails; on Ctrl-C they are interrupted first."""
    workers = len(commands)
    threads = threads or max(1, available_cpus() // max(1, workers))
    env = dict(os.environ, LORASAE_ROOT=str(paths.root()), PYTHONUNBUFFERED="1")
    env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    print(f"{workers} {what}s at once, {threads} thread(s) each; each one is: "
          f"python {' '.join(commands[0][1:])}", flush=True)  # fmt: skip
    lock = threading.Lock()
    procs, pumps, tails = [], [], []
    try:
        for i, command in enumerate(commands):
            proc = subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            tail: deque[str] = deque(maxlen=TAIL_LINES)
            pump = threading.Thread(
                target=_pump, args=(proc.stdout, f"[{what.split()[-1]} {i}/{workers}] ", tail, lock)
            )
            pump.start()
            procs.append(proc)
            pumps.append(pump)
            tails.append(tail)
        codes = [proc.wait() for proc in procs]
    except BaseException:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the process finishes its step and exits
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    finally:
        for pump in pumps:
            pump.join()
    failed = [(i, code) for i, code in enumerate(codes) if code != 0]
    if failed:
        i, code = failed[0]
        raise LorasaeError(
            f"{what} {i}/{workers} failed (exit code {code}); its last lines:\n"
            + "\n".join(tails[i])
            + f"\nRerun it alone to see everything: python {' '.join(commands[i][1:])}"
        )
