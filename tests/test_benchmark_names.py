"""Benchmark result names (issue 25): the results of the SAE and adapter the script picks by default keep
the original names (`<model>_<peft|base>_<sae|no_sae>[__<variant>].json`); another SAE's or adapter's go to
a folder that names it (`sae-<label>`, `adapter-<label>`), so two runs of different SAEs or adapters at the
same settings never share (and never replace) a file, and readers without a choice read the default ones."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from lorasae.core.cli import parse
from lorasae.lmeval.comparison import comparison_table
from lorasae.lmeval.config import BenchmarkConfig
from lorasae.lmeval.layout import ALL_FOUR, Slot, picked_variant, results_path
from lorasae.lmeval.run import run_benchmarks

pytestmark = pytest.mark.usefixtures("one_thread")

BASE_NO_SAE, BASE_SAE, PEFT_NO_SAE, PEFT_SAE = ALL_FOUR
LIMIT = ["--tasks", "tiny_facts", "--limit", "3", "--batch_size", "8", "--device", "cpu"]
VARIANT = (
    "limit-3_tasks-tiny_facts"  # a --tasks subset is named (the default tasks are the four built-in ones)
)


def test_a_slot_names_only_the_parts_a_combination_uses():
    default = Slot()
    other = Slot(sae="expansion_4_L0_2-0123abcd", adapter="peft_0-1_rank_1-89abcdef")
    for combo in ALL_FOUR:
        assert results_path("tiny", combo, slot=default) == results_path("tiny", combo)  # the plain names
    assert results_path("tiny", BASE_SAE).name == "tiny_base_sae.json"
    assert results_path("tiny", BASE_NO_SAE, slot=other) == results_path("tiny", BASE_NO_SAE)  # uses neither
    assert results_path("tiny", BASE_SAE, slot=other).parent.name == "sae-expansion_4_L0_2-0123abcd"
    assert results_path("tiny", PEFT_NO_SAE, slot=other).parent.name == "adapter-peft_0-1_rank_1-89abcdef"
    assert (
        results_path("tiny", PEFT_SAE, slot=other, variant="limit-3").parent.name
        == "sae-expansion_4_L0_2-0123abcd_adapter-peft_0-1_rank_1-89abcdef"
    )
    assert results_path("tiny", PEFT_SAE, slot=other, variant="limit-3").name == "tiny_peft_sae__limit-3.json"
    names = {results_path("tiny", c, slot=s) for c in ALL_FOUR[1:] for s in (default, other)}
    assert len(names) == 6


def _record(acc: float, fingerprint: str | None) -> dict:
    config = {"limit": None, "num_fewshot": None, "max_length": None, "tasks": ["tiny_facts"]}
    return {"results": {"tiny_facts": {"acc,none": acc}}, "config": config | {"sae_fingerprint": fingerprint}}


def test_the_comparison_reads_the_default_results_and_a_slot_its_own(out_root):
    other = Slot(sae="other-0123abcd")
    for combo in ALL_FOUR:
        path = results_path("tiny", combo)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_record(0.61, "default" if combo.sae else None)))
        os.utime(path, (1, 1))
    mine = results_path("tiny", BASE_SAE, slot=other)  # newer than the default results
    mine.parent.mkdir(parents=True)
    mine.write_text(json.dumps(_record(0.99, "other")))
    assert picked_variant("tiny") == ""
    table = comparison_table("tiny")
    assert "0.61" in table and "0.99" not in table
    row = next(line for line in comparison_table("tiny", slot=other).splitlines() if "tiny_facts" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # base_no_sae and peft_no_sae (the default adapter) are shared; the other SAE's base_sae; no peft_sae yet
    assert cells[2:] == ["0.61", "0.99", "0.61", "—"]
    assert "skipped" not in comparison_table("tiny", slot=other)


def _random_sae(folder, d: int, seed: int):
    from lorasae.sae import SaeConfig, TopKSAE

    torch.manual_seed(seed)
    sae = TopKSAE(SaeConfig(d_in=d, d_sae=4 * d, k=2, hook_layer=1), fast=False)
    sae.save(folder)
    return folder


def _adapter(model_dir, folder, rank: int, seed: int):
    from lorasae.lora.adapters import attach_lora
    from lorasae.model.load import load_model

    model, _ = load_model(str(model_dir), device="cpu")
    peft_model = attach_lora(model, layers=[0, 1], rank=rank)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    peft_model.save_pretrained(str(folder))
    return folder


@pytest.fixture
def saved(world_model, out_root):
    """The world's default SAE (layer 1) and its rank-2 adapter, saved in the project's layout."""
    from lorasae.core.paths import adapter_dir, sae_dir, sae_tag
    from lorasae.model.load import d_model, load_model

    key = world_model.name
    model, _ = load_model(str(world_model), device="cpu")
    width = d_model(model)
    sae = _random_sae(sae_dir(key, "normal", 4, 2, 1), width, seed=0)
    adapter = _adapter(world_model, adapter_dir(key, sae_tag(4, 2), [0, 1], 2), rank=2, seed=0)
    return key, sae, adapter, width


def _run(world_model, *flags: str) -> list:
    return run_benchmarks(parse(BenchmarkConfig, ["--model", str(world_model), *LIMIT, *flags]))


def _snapshot(paths) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def test_two_saes_benchmarked_at_the_same_settings_write_two_files(world_model, saved, out_root, capsys):
    key, default_sae, _, width = saved
    first = _run(world_model, "--all_four")
    assert first == [results_path(key, c, variant=VARIANT) for c in ALL_FOUR]  # the default: plain names
    before = _snapshot(first)
    table = comparison_table(key)

    # the default SAE named explicitly is still the default: the identical rerun is skipped, same file
    assert _run(world_model, "--sae", "--sae_source", str(default_sae), "--layer", "1") == []
    assert "skipped" in capsys.readouterr().out

    other_sae = _random_sae(out_root / "elsewhere" / "model.layers.1", d=width, seed=1)
    (second,) = _run(world_model, "--sae", "--sae_source", str(other_sae))
    assert second not in first and second.name == first[1].name  # the same settings, another SAE
    assert second.parent.name.startswith("sae-elsewhere--model.layers.1-")
    assert json.loads(second.read_text())["config"]["sae_source"] == [str(other_sae)]
    assert _snapshot(first) == before  # neither replaced nor rewritten
    assert comparison_table(key) == table  # readers without a choice read the default SAE's results
    assert str(other_sae) not in json.dumps(json.loads(first[1].read_text())["config"])


def test_two_adapters_benchmarked_at_the_same_settings_write_two_files(world_model, saved, out_root):
    from lorasae.core.paths import adapter_dir, sae_tag

    key, default_sae, default_adapter, _ = saved
    first = _run(world_model, "--model_variant", "peft")
    assert first == [results_path(key, PEFT_NO_SAE, variant=VARIANT)]
    assert json.loads(first[0].read_text())["config"]["adapter"] == str(default_adapter)
    before = _snapshot(first)

    other = _adapter(world_model, adapter_dir(key, sae_tag(4, 2), [0, 1], 1), rank=1, seed=1)
    (second,) = _run(world_model, "--model_variant", "peft", "--adapter", str(other))
    assert second != first[0] and second.name == first[0].name
    assert second.parent.name.startswith("adapter-peft_0-1_rank_1-")
    assert json.loads(second.read_text())["config"]["adapter"] == str(other)
    assert _snapshot(first) == before
    # the SAE column of that adapter: the default SAE (its adapter's), so only the adapter is named
    (spliced,) = _run(world_model, "--model_variant", "peft", "--sae", "--adapter", str(other))
    assert spliced.parent == second.parent and spliced.name == f"{key}_peft_sae__{VARIANT}.json"
    (source,) = json.loads(spliced.read_text())["config"]["sae_source"]
    assert Path(source).resolve() == default_sae.resolve()


def test_planned_paths_are_the_default_names_once_the_default_sae_exists(world_model, out_root, saved):
    """What the demo's benchmark stage checks (`planned_paths`): the plain names of the default SAE and
    adapter; another SAE's run plans its own folder; None while the SAE cannot be found."""
    from lorasae.lmeval.pairing import planned_paths

    key, default_sae, _, width = saved
    demo = BenchmarkConfig(model=str(world_model), all_four=True, limit=3, tasks="tiny_facts", sae_layer=1)
    assert planned_paths(demo) == [results_path(key, c, variant=VARIANT) for c in ALL_FOUR]
    other_sae = _random_sae(out_root / "elsewhere" / "model.layers.1", d=width, seed=1)
    other = BenchmarkConfig(model=str(world_model), splice_sae=True, limit=3, sae_source=str(other_sae))
    (path,) = planned_paths(other)
    assert path.parent.name.startswith("sae-elsewhere--model.layers.1-")
    missing = BenchmarkConfig(model=str(world_model), splice_sae=True, architecture="relu")
    assert planned_paths(missing) is None  # no ReLU SAE saved


def test_tasks_dtype_and_bootstrap_off_their_defaults_name_the_result_and_an_explicit_default_does_not():
    # a --tasks subset wrote the full run's file; --dtype / --bootstrap_iters were neither named nor in
    # the run identity (a run differing only there was skipped as identical)
    from lorasae.lmeval.config import BenchmarkConfig
    from lorasae.lmeval.plan import default_tasks, result_variant

    tasks = default_tasks("tiny")
    plain = BenchmarkConfig(model="tiny")
    assert result_variant(plain, tasks, "tiny") == ""
    assert result_variant(BenchmarkConfig(model="tiny", dtype="float32"), tasks, "tiny") == ""
    assert (
        result_variant(BenchmarkConfig(model="tiny", limit=100), list(reversed(tasks)), "tiny") == "limit-100"
    )
    names = {
        result_variant(plain, tasks[:1], "tiny"),
        result_variant(BenchmarkConfig(model="tiny", dtype="bfloat16"), tasks, "tiny"),
        result_variant(BenchmarkConfig(model="tiny", bootstrap_iters=1000), tasks, "tiny"),
    }
    assert "" not in names and len(names) == 3
