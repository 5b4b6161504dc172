"""The demo's stage runner: numbered progress lines with wall time, a stage whose outputs exist skipped,
and each stage's time recorded (`data/demo_stages.json`) so the from-scratch total survives reruns."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from lorasae.atomic import atomic_write_json


class Stages:
    """Numbered progress lines with wall time; a stage whose outputs exist is skipped. The time of each
    stage that ran is kept in `record` (JSON), so the total of a run from scratch survives reruns."""

    def __init__(self, total: int, record: Path):
        self.total, self.index, self.start, self.record = total, 0, time.perf_counter(), record
        try:
            self.seconds: dict[str, float] = dict(json.loads(record.read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            self.seconds = {}

    def run(self, title: str, done: bool, fn: Callable[[], object]) -> None:
        self.index += 1
        prefix = f"[{self.index}/{self.total}] {title}"
        if done:
            print(f"{prefix}: outputs exist, skipped", flush=True)
            return
        print(f"{prefix} ...", flush=True)
        began = time.perf_counter()
        fn()
        seconds = time.perf_counter() - began
        print(f"{prefix}: done in {seconds:.0f} s", flush=True)
        self.seconds[str(self.index)] = round(seconds, 1)
        atomic_write_json(self.record, {"machine": _machine(), "seconds": self.seconds})

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
