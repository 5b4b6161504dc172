"""bench/gpu_check.sh in its CPU dry-run mode (`--device cpu --tiny`): every check runs end to end at toy
widths through the same scripts and code paths as on the GPU, and the markdown table comes out."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_on_cpu_prints_the_table(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--device", "cpu", "--tiny"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    # the sparsify comparison needs the benchmark-only requirements (requirements-bench.txt), which
    # `make setup` installs; without them that one check must fail saying so
    has_sparsify = importlib.util.find_spec("sparsify") is not None
    assert out.returncode == (0 if has_sparsify else 1), out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert "| check | status | wall | result (last line) |" in lines
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "| ok |" in line}
    assert set(rows) == {"harvest", "lora_step", "train_sae"} | ({"sae_step"} if has_sparsify else set())
    if has_sparsify:
        assert "sparsify" in rows["sae_step"]
    else:
        assert "No module named 'sparsify'" in out.stdout and "requirements-bench.txt" in out.stdout
    assert "tok/s" in rows["harvest"] and "lora_step: throughput" in rows["lora_step"]
    assert "normal topk SAE gemma-2-2b-shrunk layer 2" in rows["train_sae"]
