"""bench/rehearsal.py at toy widths (`--shrink`): every paper path of both architectures runs as its own
script on the random-weight model folders and reports its time and peak memory. Slow (minutes: one
process per path); the real-shape run is `python bench/rehearsal.py` (BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_shrunk_rehearsal_runs_every_path(tmp_path):
    report = tmp_path / "rehearsal.json"
    argv = [sys.executable, str(REPO / "bench" / "rehearsal.py"), "--shrink", "--workdir", str(tmp_path),
            "--json_out", str(report)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=3000, check=False)
    assert out.returncode == 0, out.stdout[-4000:]
    rows = json.loads(report.read_text())["rows"]
    assert {(r["model"], r["path"]) for r in rows} == {
        (f"{m} (shrunk)", p)
        for m in ("llama-3.2-1b", "gemma-2-2b")
        for p in ("sae", "lora", "core", "benchmark", "steering", "steering_eval")
    }
    assert all(r["ok"] and r["peak_rss_gib"] > 0 for r in rows)
