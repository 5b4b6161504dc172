"""The demo's stage runner: numbered progress lines with wall time, a stage whose outputs exist skipped,
and each stage's time recorded (`data/demo_stages.json`) so the from-scratch total survives reruns; with
each stage's CPU time (user + system, of the demo's process and the processes it waited for, e.g. the
sweep shards), which a shared machine disturbs far less than the wall time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from lorasae.core.atomic import atomic_write_json


class Stages:
    """Numbered progress lines with wall time; a stage whose outputs exist is skipped. The time of each
    stage that ran is kept in `record` (JSON), so the total of a run from scratch survives reruns."""

    def __init__(self, total: int, record: Path):
        self.total, self.index, self.start, self.record = total, 0, time.perf_counter(), record
        try:
            saved = json.loads(record.read_text())
            self.seconds: dict[str, float] = dict(saved["seconds"])
            self.cpu_seconds: dict[str, float] = dict(saved.get("cpu_seconds", {}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.seconds, self.cpu_seconds = {}, {}

    def run(self, title: str, done: bool, fn: Callable[[], object]) -> None:
        self.index += 1
        prefix = f"[{self.index}/{self.total}] {title}"
        if done:
            print(f"{prefix}: outputs exist, skipped", flush=True)
            return
        print(f"{prefix} ...", flush=True)
        began, cpu_began = time.perf_counter(), cpu_seconds()
        fn()
        seconds, cpu = time.perf_counter() - began, cpu_seconds() - cpu_began
        print(f"{prefix}: done in {seconds:.0f} s", flush=True)
        self.seconds[str(self.index)] = round(seconds, 1)
        self.cpu_seconds[str(self.index)] = round(cpu, 1)
        record = {"machine": _machine(), "seconds": self.seconds, "cpu_seconds": self.cpu_seconds}
        atomic_write_json(self.record, record)

    def elapsed_minutes(self) -> float:
        return (time.perf_counter() - self.start) / 60

    def recorded_minutes(self) -> float:
        """The sum of the last recorded time of every stage: the demo's time from scratch."""
        return sum(self.seconds.values()) / 60

    def machine(self) -> str:
        try:
            return str(json.loads(self.record.read_text())["machine"])
        except (OSError, ValueError, KeyError, TypeError):
            return _machine()


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have been waited for."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo's `model name`, else `platform.processor()`, else the
    architecture)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> str:
    import os
    import platform

    import torch

    return (
        f"{cpu_name()} ({os.cpu_count()} cores, {platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}"
    )
