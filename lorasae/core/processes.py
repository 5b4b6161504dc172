"""Commands run at once, each in its own process with its share of the CPU threads, their lines printed as
they come, prefixed (`run_processes`): the sweep's shards (`lorasae.sweep.shards`), the demo's LoRA workers
(`lorasae.lora.parallel`), the dictionaries' shards and SAE-Bench's base/merged workers. A small model's step
is a chain of small ops that a second thread barely speeds up, so one-thread processes on every core finish
independent runs in about half the time of one two-thread process running them in turn."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import deque
from typing import IO

from lorasae.core import paths
from lorasae.core.errors import LorasaeError
from lorasae.core.runtime import available_cpus

TAIL_LINES = 30  # lines of a failed process's output repeated in the error


def _pump(stream: IO[str], prefix: str, tail: deque[str], lock: threading.Lock) -> None:
    for line in stream:
        tail.append(line.rstrip("\n"))
        with lock:
            print(f"{prefix}{line}", end="", flush=True)


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
