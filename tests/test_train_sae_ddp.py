"""Data-parallel SAE training: `torchrun --nproc_per_node 2 train_sae.py --batch_size 2` (gloo, one
sequence per rank) ends with the same SAE as one process with both sequences per step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from sae_train_helpers import fast_args, fast_config, write_tiny_world

from lorasae.core import paths
from lorasae.sae import TopKSAE
from lorasae.train.sae_trainer import train_sae
from lorasae.train.state import checkpoint_dir

REPO = Path(__file__).resolve().parent.parent
RUN = {"num_train_tokens": 1920, "batch_size": 2}  # 30 steps of 2 sequences


def test_two_gloo_ranks_match_one_process(tmp_path, monkeypatch):
    model_dir, data = write_tiny_world(tmp_path)
    ddp_root = tmp_path / "ddp"
    env = os.environ | {"LORASAE_ROOT": str(ddp_root), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, "train_sae.py", *fast_args(model_dir, data, **RUN)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path / "single"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train_sae(fast_config(model_dir, data, **RUN))
    finally:
        torch.set_num_threads(threads)

    monkeypatch.setenv("LORASAE_ROOT", str(ddp_root))
    ddp_dir = checkpoint_dir(fast_config(model_dir, data, **RUN))  # its settings named (issue 25)
    assert ddp_dir.parent.name == single.final_dir.parent.name
    ddp_sae = TopKSAE.load(ddp_dir)
    one_sae = TopKSAE.load(single.final_dir)
    for name, weight in one_sae.state_dict().items():
        torch.testing.assert_close(ddp_sae.state_dict()[name], weight, atol=1e-5, rtol=1e-4, msg=name)
    sae = f"{ddp_dir.parent.name}/model.layers.1"  # not the model's default SAE: its own curve file
    curve = json.loads(paths.sae_curve_path("val_loss", "model", "normal", sae=sae).read_text())
    torch.testing.assert_close(torch.tensor(curve), torch.tensor(single.val_loss), atol=1e-5, rtol=1e-5)
    assert (checkpoint_dir(fast_config(model_dir, data, **RUN), 50) / "cfg.json").exists()
