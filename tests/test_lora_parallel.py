"""LoRA runs in parallel worker processes (`lorasae.lora.parallel`): every run goes to exactly one worker,
and a worker rebuilds each run's config exactly from the file it is handed. (`tests/test_demo.py` runs
the demo's checkpoint runs through two workers end to end.)"""

from __future__ import annotations

import dataclasses

from lorasae.core.atomic import atomic_write_json
from lorasae.core.cli import parse
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.parallel import worker_groups


def test_worker_groups_take_every_run_once_round_robin_with_no_empty_worker():
    assert worker_groups(5, 2) == [[0, 2, 4], [1, 3]]
    assert worker_groups(2, 4) == [[0], [1]]
    assert worker_groups(3, 1) == [[0, 1, 2]]
    for count in range(1, 9):
        for workers in range(1, 5):
            groups = worker_groups(count, workers)
            assert sorted(i for group in groups for i in group) == list(range(count))
            assert all(groups) and len(groups) == min(count, workers)


def test_a_workers_config_file_gives_back_the_very_run(tmp_path):
    cfg = TrainLoraConfig(
        device="cpu", model_type="tiny", sae_layer="1", rank=16, num_train_examples=160, k=4,
        expansion_factor=8, checkpoint_percent=40, save_model=True, skip_existing=True, seed=42,
        progress=False, eval_every=32, LoRA_layers="after",
    )  # fmt: skip
    file = tmp_path / "run0.json"
    atomic_write_json(file, dataclasses.asdict(cfg))
    assert parse(TrainLoraConfig, ["--config_file", str(file)]) == cfg
