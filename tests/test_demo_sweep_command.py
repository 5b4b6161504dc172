"""README's post-demo sweep command finds every run the demo's sweep stage trained (issue 25): after
`make demo`, `sweep.py ... --ranks 16 --num_train_examples 160 --eval_every 160` found 9 of the demo's 11
runs done and retrained 2. The 2 were the one-layer runs (`single_layer` axis): the sweep trains them at
`--rank` (default 64, the paper's), the demo at its `rank` (16), so without `--rank 16` they are other runs
(`peft_2-2_rank_64...` beside the demo's `peft_2-2_rank_16..._every-160`), correctly not done. The command
needs `--rank 16`; this test holds the corrected command to the demo's sweep settings."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from conftest import make_char_tokenizer, make_tiny_model

from lorasae.core import paths
from lorasae.core.cli import parse
from lorasae.demo.main import DemoConfig
from lorasae.demo.sweep_stage import sweep_config
from lorasae.lora.config import LoraHyperparams
from lorasae.store.lora_identity import NOT_IDENTITY
from lorasae.sweep.config import SweepConfig, sweep_variant
from lorasae.sweep.shards import shard_config_path

README_SWEEP = "--device cpu --catalog ours --model_type tiny --ranks 16 --rank 16 --num_train_examples 160 --eval_every 160"
# what, beside the SAE, decides a sweep run's identity (`lorasae.sweep.run.lora_config`)
RUN_SETTINGS = [f.name for f in fields(LoraHyperparams) if f.name not in NOT_IDENTITY] + [
    "seed", "dataset", "dtype", "LoRA_layers", "single_layers", "catalog",
]  # fmt: skip


def test_the_readme_sweep_command_plans_the_runs_the_demo_trained(tmp_path, out_root):
    folder = tmp_path / "tiny"
    make_tiny_model("llama", n_layers=4).save_pretrained(folder)
    make_char_tokenizer().save_pretrained(folder)
    demo = sweep_config(DemoConfig(), str(folder), 4, [2, 4, 16], [0, 2, 3])
    readme = parse(SweepConfig, README_SWEEP.split())
    assert {k: getattr(readme, k) for k in RUN_SETTINGS} == {k: getattr(demo, k) for k in RUN_SETTINGS}
    assert set(readme.ranks) <= set(demo.ranks)  # the L0, width and layer runs at rank 16
    assert readme.rank == demo.rank == 16  # the one-layer runs at the demo's rank
    without = parse(SweepConfig, README_SWEEP.replace(" --rank 16", "").split())
    assert without.rank == 64 != demo.rank  # the command before: its 2 one-layer runs were other runs


def test_the_readme_shard_lines_name_the_demo_sweeps_config_and_the_readme_sweep_line_gets_its_own_name(
    tmp_path, out_root
):
    # issue 25: the demo's sweep keeps README's plain names; README's post-demo sweep (other settings) never
    # takes them, so it replaces neither the demo's manifest nor its figures
    folder = tmp_path / "tiny"
    make_tiny_model("llama", n_layers=4).save_pretrained(folder)
    make_char_tokenizer().save_pretrained(folder)
    demo = sweep_config(DemoConfig(), str(folder), 4, [2, 4, 16], [0, 2, 3])
    assert sweep_variant(demo) == ""
    shard_config = shard_config_path(demo).relative_to(paths.root()).as_posix()
    assert shard_config == "data/sweeps/tiny.config.json"
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = re.findall(r"--config_file (data/sweeps/\S+)", readme)
    assert len(lines) >= 3 and set(lines) == {shard_config}, lines
    readme_sweep = parse(SweepConfig, README_SWEEP.split())
    assert sweep_variant(readme_sweep) not in ("", sweep_variant(demo))
    assert paths.sweep_manifest("tiny", variant=sweep_variant(readme_sweep)) != paths.sweep_manifest("tiny")
