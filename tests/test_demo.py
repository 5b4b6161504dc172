"""`make demo` at test size: every stage on the (cached) test world, the table, the figures, README's
results block rewritten, and a rerun that skips every stage. Plus the README block's own rules."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lorasae.demo import DemoConfig, run_demo
from lorasae.demo_readme import BEGIN, END, replace_block, results_block

README = f"# x\n\nbefore\n\n{BEGIN}\nold results\n{END}\n\nafter\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_replace_block_keeps_the_rest_of_the_readme():
    block = results_block("| a |\n|---|\n| 1 |", "| s |", 7.25, "2 CPU cores", "docs/demo_timing.png")
    text = replace_block(README, block)
    assert text.startswith("# x\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "old results" not in text and "7.2 min on 2 CPU cores" in text
    assert "![Spliced CE vs training time on the built-in model](docs/demo_timing.png)" in text
    assert replace_block(text, block) == text  # idempotent
    with pytest.raises(ValueError, match="no demo block"):
        replace_block("# no markers\n", block)


def test_demo_end_to_end_at_test_size(small_world, out_root: Path, capsys):
    shutil.copytree(small_world, out_root / "saved_models" / "tiny")  # stage 1 finds the world built
    (out_root / "README.md").write_text(README)
    # layer 0: the test world has two layers, and the one-layer stage needs a layer after the SAE
    cfg = DemoConfig(
        layer=0, sae_tokens=12_000, lora_examples=4, ranks=(1, 4), checkpoints=(50, 100), sweep_k=(2, 8)
    )
    run_demo(cfg)
    out = capsys.readouterr().out
    assert "[1/9] built-in world: outputs exist, skipped" in out
    for stage in range(2, 10):
        assert re.search(rf"^\[{stage}/9\] .*: done in \d+ s$", out, re.M), out
    # the table: one row per distinct run: 2 checkpoints, rank 1 and 4, k 2 and 8, layers 2 and 3
    table = out[out.index("% gap closed") :]
    assert table.count("expansion_8_L0_") >= 8
    assert "e2e speed-up (e2e SAE time" in out
    for name in ("tiny_timing", "tiny_scaling", "tiny_single_layer_lora"):
        assert (out_root / "plots" / f"{name}.png").stat().st_size > 0
    readme = (out_root / "README.md").read_text()
    assert "old results" not in readme and "| SAE" in readme and "demo_timing.png" in readme
    assert (out_root / "docs" / "demo_timing.png").stat().st_size > 0

    recorded = json.loads((out_root / "data" / "demo_stages.json").read_text())["seconds"]
    assert sorted(recorded, key=int) == [str(i) for i in range(2, 10)]  # stage 1 (the world) was skipped
    # every run saved its adapter; the steering eval's rank-1 adapter on the layers after the SAE exists
    adapters = sorted((out_root / "saved_models" / "tiny").glob("*/peft_*/rank_*/adapter_config.json"))
    assert len(adapters) >= 8
    assert any(a.parent.parent.name == "peft_1-1" and a.parent.name == "rank_1" for a in adapters)

    run_demo(cfg)  # a rerun skips every training stage, and README keeps the from-scratch time
    out = capsys.readouterr().out
    for stage in range(1, 9):
        assert f"[{stage}/9]" in out
    assert out.count("outputs exist, skipped") == 8
    minutes = sum(json.loads((out_root / "data" / "demo_stages.json").read_text())["seconds"].values()) / 60
    assert f"from scratch (world build included): {minutes:.1f} min" in (out_root / "README.md").read_text()
