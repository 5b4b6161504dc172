"""The demo's stage runner records each stage's CPU time (user + system, child processes included) beside
its wall time (issue 30: stage costs measured on a shared machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lorasae.demo.stages import Stages, cpu_seconds

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"


def test_stage_cpu_time_counts_the_child_processes_it_waited_for(tmp_path: Path) -> None:
    record = tmp_path / "stages.json"
    stages = Stages(total=2, record=record)
    before = cpu_seconds()
    stages.run(
        "child burns 0.3 s of CPU", False, lambda: subprocess.run([sys.executable, "-c", BURN], check=True)
    )
    stages.run("done already", True, lambda: None)
    saved = json.loads(record.read_text())
    assert set(saved["cpu_seconds"]) == set(saved["seconds"]) == {"1"}
    assert saved["cpu_seconds"]["1"] >= 0.3 and cpu_seconds() - before >= 0.3
    again = Stages(total=2, record=record)  # a rerun keeps the recorded CPU times
    assert again.cpu_seconds == {"1": saved["cpu_seconds"]["1"]}
