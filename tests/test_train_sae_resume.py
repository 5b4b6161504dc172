"""Resume after SIGKILL: a run killed mid-way and continued with --resume ends with the same SAE as an
uninterrupted run, and its curve has every point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from sae_train_helpers import fast_args, fast_config, write_tiny_world

from lorasae.sae import TopKSAE
from lorasae.train.sae_trainer import train_sae
from lorasae.train.state import checkpoint_dir, load_state, state_path

REPO = Path(__file__).resolve().parent.parent
RUN = {"num_train_tokens": 12_800, "save_every_steps": 5}  # 200 steps


def _train_in_process(model_dir: Path, data: Path, root: Path, monkeypatch, **extra: object):
    monkeypatch.setenv("LORASAE_ROOT", str(root))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocess, so the arithmetic is the same
    try:
        return train_sae(fast_config(model_dir, data, **RUN, **extra))
    finally:
        torch.set_num_threads(threads)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    model_dir, data = write_tiny_world(tmp_path)
    reference = _train_in_process(model_dir, data, tmp_path / "uninterrupted", monkeypatch)

    root = tmp_path / "killed"
    cfg = fast_config(model_dir, data, **RUN).resolved(32, 128)
    monkeypatch.setenv("LORASAE_ROOT", str(root))
    state_file, final_dir = state_path(cfg), checkpoint_dir(cfg)
    env = os.environ | {"LORASAE_ROOT": str(root), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(
        [sys.executable, "train_sae.py", *fast_args(model_dir, data, **RUN)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not state_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    killed_at = load_state(state_file).step
    assert 0 < killed_at < cfg.total_steps and not final_dir.exists()

    resumed = _train_in_process(model_dir, data, root, monkeypatch, resume=True)
    assert resumed.steps == reference.steps == cfg.total_steps
    a, b = TopKSAE.load(final_dir), TopKSAE.load(reference.final_dir)
    for name, weight in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[name], weight, atol=1e-6, rtol=1e-5, msg=name)
    # the curve continues where the state left off: every point, same values
    curve = json.loads(resumed.curve_files["val_loss"].read_text())
    assert len(curve) == 11
    torch.testing.assert_close(torch.tensor(curve), torch.tensor(reference.val_loss), atol=1e-6, rtol=1e-5)
