"""`make demo` at test size: every stage on the (cached) test world, the table, the figures, the results
page in plots/demo/ (README left alone), and a rerun that skips every stage. Plus the README block's own
rules."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from lorasae.core.records import read_record
from lorasae.demo.main import DemoConfig, run_demo, stage_count
from lorasae.demo.readme import BEGIN, END, replace_block, results_block
from lorasae.demo.sections import SECTIONS, Section
from lorasae.evals.shape import EvalSizes

README = f"# x\n\nbefore\n\n{BEGIN}\nold results\n{END}\n\nafter\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_replace_block_keeps_the_rest_of_the_readme():
    section = Section("LoRA runs", "LoRA closes 30–55 % of the gap.", "| a |\n|---|\n| 1 |")
    block = results_block(7.25, "2 CPU cores", [section], {"LoRA runs": ["docs/demo/tiny_timing.png"]})
    text = replace_block(README, block)
    assert text.startswith("# x\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "old results" not in text and "7.2 min on 2 CPU cores" in text
    assert "#### LoRA runs" in text and "*Paper:* LoRA closes 30–55 % of the gap." in text
    assert "![LoRA runs](docs/demo/tiny_timing.png)" in text
    assert replace_block(text, block) == text  # idempotent
    with pytest.raises(ValueError, match="no demo block"):
        replace_block("# no markers\n", block)


# every evaluation at its smallest: the stages run; each eval's own numbers are tested in its own file
SMALL_EVALS = EvalSizes(
    steering_negatives=8, steering_snippets=400, steering_grid="1,2", benchmark_limit=8, saebench_evals="core",
    dark_matter_tokens=4_000, dark_matter_pursuit_tokens=200, dark_matter_error_sae_steps=10,
    dark_matter_ce_chunks=4,
)  # fmt: skip
FIGURES = [
    "tiny_timing", "tiny_scaling", "tiny_single_layer_lora", "tiny_multi_sae", "saebench_tiny",
    "tiny_interp_layers", "tiny_interp_token_loss",
]  # fmt: skip


def test_demo_end_to_end_at_test_size(small_world, small_world_s, out_root: Path, capsys):
    shutil.copytree(small_world, out_root / "saved_models" / "tiny")  # stage 1 finds the world built
    shutil.copytree(small_world_s, out_root / "saved_models" / "tiny-s")  # and its second size
    (out_root / "README.md").write_text(README)
    # layer 0: the test world has two layers, and the one-layer stage needs a layer after the SAE
    cfg = DemoConfig(
        layer=0, sae_tokens=12_000, lora_examples=4, ranks=(1, 16), checkpoints=(50, 100), sweep_k=(2,),
        widths=(4, 8), multi_layers=(0, 1), sizes=SMALL_EVALS, sweep_shards=2,
    )  # fmt: skip
    run_demo(cfg)
    total = stage_count(True)  # the training stages, the figures and one stage per demo stage of the registry
    out = capsys.readouterr().out
    assert f"[1/{total}] built-in world (tiny-s, tiny): outputs exist, skipped" in out
    for stage in range(2, total + 1):
        assert re.search(rf"^\[{stage}/{total}\] .*: done in \d+ s$", out, re.M), out
    # the table: the 2 checkpoints; k 1 and 2, width ×4, layer 1, at rank 1 and 16; one layer at a time;
    # rank 1 after; both layers at once
    table = out[out.index("% gap closed") :]
    assert table.count("expansion_") >= 10
    assert "e2e speed-up (e2e SAE time" in out
    # the sweep ran as two shard processes, each its half of the runs, every run in results.csv once
    assert "2 sweep shards at once" in out and "[shard 1/2] " in out
    # the 2 checkpoint runs went to two LoRA worker processes at once (`lorasae.lora.parallel`)
    assert "2 LoRA workers at once" in out and "[worker 1/2] " in out
    # the dictionaries' jobs in two processes taking jobs from one queue; Dark Matter in its own process,
    # started when the evaluation stages began and waited for at its turn (`lorasae.demo.beside`)
    assert "2 dictionaries shards at once" in out and "[shard 1/2] " in out
    assert "1 stage beside the others at once, 1 thread(s) each" in out and "[Dark Matter of SAEs] " in out
    assert re.search(
        r"^Dark Matter of SAEs .*: started in a one-thread process beside the stages before it$", out, re.M
    )
    with open(out_root / "data" / "results.csv", newline="") as handle:
        runs = [
            (r["model"], r["sae_tag"], r["sae_layers"], r["lora_layers"], r["rank"])
            for r in csv.DictReader(handle)
        ]
    done = list((out_root / "data" / "TopK" / "CE_increase").rglob("*.json.run.json"))  # completion records
    assert len(runs) == len(set(runs)) == len(done)
    for title in (
        "Several SAEs at once",
        "SAE-Bench: base vs LoRA",
        "Steering",
        "Benchmarks",
        "Interpretability",
    ):
        assert f"\n{title}" in out, title
    assert re.search(r"^SAE@0\+1 ", out, re.M) and re.search(r"^SAE@1 ", out, re.M)  # joint, and each alone
    for name in FIGURES:
        assert (out_root / "plots" / f"{name}.png").stat().st_size > 0, name
    assert list((out_root / "plots").glob("steering_*latent_*.png"))  # named by the result's slot
    # Dark Matter at the demo's sizes: its own results and figures, named by its settings
    (dm_results,) = [
        p
        for p in (out_root / "data" / "dark_matter" / "tiny").glob("results__*.json")
        if ".run." not in p.name
    ]
    assert read_record(dm_results).get("variant") == dm_results.name.removesuffix(".json").split("__", 1)[1]
    assert list((out_root / "plots" / "dark_matter").glob("tiny__*/decomposition.png"))
    manifest = json.loads((out_root / "data" / "sweeps" / "tiny.json").read_text())
    # the shards read README's `--config_file data/sweeps/tiny.config.json` (issue 25: not a settings name)
    assert f"--config_file {out_root / 'data' / 'sweeps' / 'tiny.config.json'} --shard 0/2" in out
    assert {"l0", "width", "layer", "single_layer"} <= set(manifest["axes"])
    # the model-size sweep: both built-in sizes, each on its own SAE, at every rank
    assert manifest["models"] == ["tiny-s", "tiny"] and set(manifest["model_size"]) == {"tiny-s", "tiny"}
    sized = [r for r in runs if r[:2] == ("tiny-s", manifest["model_size"]["tiny-s"])]
    assert sorted(int(r[4]) for r in sized) == [1, 16]
    assert (out_root / "saved_saes" / "tiny-s").is_dir()
    assert (out_root / "README.md").read_text() == README and not (out_root / "docs").exists()
    page = (out_root / "plots" / "demo" / "RESULTS.md").read_text()
    page_record = read_record(out_root / "plots" / "demo" / "RESULTS.md")  # the results it read, by digest
    assert page_record.kind == "demo_results_page" and str(
        dm_results.relative_to(out_root)
    ) in page_record.get("inputs")
    assert "| SAE" in page and "](tiny_timing.png)" in page
    for title, _, _ in SECTIONS:
        assert f"#### {title}" in page, title
    assert page.count("![") >= 9 and (out_root / "plots" / "demo" / "tiny_multi_sae.png").stat().st_size > 0
    assert page.count("\n- **") >= 6  # the generated claims

    recorded = json.loads((out_root / "data" / "demo_stages.json").read_text())["seconds"]
    assert sorted(recorded, key=int) == [
        str(i) for i in range(2, total + 1)
    ]  # stage 1 (the world) was skipped
    assert (
        len(list((out_root / "eval" / "dashboard" / "tiny").glob("*/peft_0-1_rank_16*/latent_*.html"))) >= 8
    )
    # every run saved its adapter; the steering eval's rank-1 adapter on the layers after the SAE exists
    adapters = sorted((out_root / "saved_models" / "tiny").glob("*/peft_*/rank_*/adapter_config.json"))
    assert len(adapters) >= 10
    # (the demo's settings are off the paper's defaults, so the folder is `rank_1__n-<N>_...`: the record
    # says the rank)
    assert any(
        a.parent.parent.name == "peft_1-1" and read_record(a.parent).get("rank") == 1 for a in adapters
    )

    run_demo(cfg)  # a rerun skips every stage but the figures, and the page keeps the from-scratch time
    out = capsys.readouterr().out
    assert out.count("outputs exist, skipped") == total - 1, out
    minutes = sum(json.loads((out_root / "data" / "demo_stages.json").read_text())["seconds"].values()) / 60
    page = (out_root / "plots" / "demo" / "RESULTS.md").read_text()
    assert f"from scratch (world build included): {minutes:.1f} min" in page
