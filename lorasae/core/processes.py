"""Commands run at once, each in its own process with its share of the CPU threads, their lines printed as
they come, prefixed (`run_processes`, or `start_processes` and later `Started.wait`): the sweep's shards
(`lorasae.sweep.shards`), the demo's LoRA workers (`lorasae.lora.parallel`), the dictionaries' shards,
SAE-Bench's base/merged workers and the demo stages run beside the others (`lorasae.demo.beside`). A small model's step
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


class Started:
    """Processes started by `start_processes`, their output pumped to this one's, prefixed."""

    def __init__(self, commands: list[list[str]], labels: list[str]):
        self.commands, self.labels = commands, labels
        self.procs: list[subprocess.Popen] = []
        self.pumps: list[threading.Thread] = []
        self.tails: list[deque[str]] = []

    def wait(self) -> None:
        """Wait for every process; raises naming the first that failed (its last lines and how to rerun
        it). On Ctrl-C (or any error here) the processes still running are interrupted first."""
        try:
            codes = [proc.wait() for proc in self.procs]
        except BaseException:
            self.interrupt()
            raise
        finally:
            for pump in self.pumps:
                pump.join()
        failed = [(i, code) for i, code in enumerate(codes) if code != 0]
        if failed:
            i, code = failed[0]
            raise LorasaeError(
                f"{self.labels[i]} failed (exit code {code}); its last lines:\n"
                + "\n".join(self.tails[i])
                + f"\nRerun it alone to see everything: python {' '.join(self.commands[i][1:])}"
            )

    def interrupt(self) -> None:
        """SIGINT to every process still running (each finishes its step and exits), then wait (a minute,
        then kill)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_processes(
    commands: list[list[str]], what: str, threads: int | None = None, labels: list[str] | None = None
) -> Started:
    """Start `commands` (each `[python, -m, module, ...]`, the i-th called "<what> i/n") at once, each process
    with `threads` CPU threads (default: the available cores split evenly, at least one), their lines
    printed as they come, each prefixed `[<label>] ` (`labels`, default `<last word of what> i/n`; errors
    name the process as `<what> i/n` or its label)."""
    workers = len(commands)
    threads = threads or max(1, available_cpus() // max(1, workers))
    env = dict(os.environ, LORASAE_ROOT=str(paths.root()), PYTHONUNBUFFERED="1")
    env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    print(f"{workers} {what}{'s' if workers > 1 else ''} at once, {threads} thread(s) each; each one is: "
          f"python {' '.join(commands[0][1:])}", flush=True)  # fmt: skip
    names = labels or [f"{what} {i}/{workers}" for i in range(workers)]
    prefixes = labels or [f"{what.split()[-1]} {i}/{workers}" for i in range(workers)]
    started, lock = Started(commands, names), threading.Lock()
    try:
        for command, prefix in zip(commands, [f"[{p}] " for p in prefixes], strict=True):
            proc = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            )
            tail: deque[str] = deque(maxlen=TAIL_LINES)
            pump = threading.Thread(target=_pump, args=(proc.stdout, prefix, tail, lock))
            pump.start()
            started.procs.append(proc)
            started.pumps.append(pump)
            started.tails.append(tail)
    except BaseException:
        started.interrupt()
        raise
    return started


def run_processes(commands: list[list[str]], what: str, threads: int | None = None) -> None:
    """`start_processes`, then wait for all of them. Raises if any fails; on Ctrl-C they are interrupted
    first."""
    start_processes(commands, what, threads).wait()
