"""Run identity of LoRA runs (issue 25): output names unique per identity, the paper's default names kept,
a run record beside every output, one "done" rule for train_lora.py and sweep.py, identical reruns
skipped (and --overwrite), another run's outputs never replaced, adapters found by their records."""

from __future__ import annotations

import csv
import itertools
import json
import random
import shutil
import warnings

import pytest
import torch
from conftest import make_char_tokenizer, make_tiny_model

from lorasae.core import paths
from lorasae.core.cli import parse
from lorasae.core.errors import OutputExistsError
from lorasae.core.paths import LORA_NAME_KEYS, adapter_dir, lora_variant, sae_dir
from lorasae.core.records import read_record
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.run import main, make_run_id, plan_runs
from lorasae.model.load import ModelShape
from lorasae.results.lora_runs import load_lora_runs
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.store import external_run, find_adapter

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "the a cat dog sat on mat ran far and then slept under big red tree house".split()
GEMMA = ModelShape(d_model=2304, n_layers=26, max_positions=8192)
SCOPE = "gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82"


# --- the naming rule --------------------------------------------------------------------------------------
def test_two_settings_records_that_differ_never_share_a_variant_name():
    values = {
        "num_train_examples": [160, 300, 15_001],
        "dataset": ["a/text.txt", "b/text.txt", "text.txt", "t e x t", "t-e-x-t"],
        "seed": [0, 1, 43],
        "lr": [1e-3, 0.001000001, 5e-4],
        "kl_impl": ["naive", "chunked"],
        "ctx_len": [16, 160],
        "lora_dropout": [0.0, 0.1],
    }
    records = [{}]
    for key, options in values.items():
        records += [{key: v} for v in options]
    # pairs of settings too: a name must not be ambiguous about which setting a value belongs to
    for (k1, o1), (k2, o2) in itertools.combinations(values.items(), 2):
        records += [{k1: a, k2: b} for a in o1[:2] for b in o2[:2]]
    names = [lora_variant(r) for r in records]
    assert len(set(names)) == len(records)
    assert lora_variant({}) == ""  # the paper's defaults: no variant, the original names
    with pytest.raises(ValueError, match="LORA_NAME_KEYS"):
        lora_variant({"no_such_setting": 1})
    assert set(LORA_NAME_KEYS) >= {"num_train_examples", "lr", "seed", "dataset", "kl_impl"}


def _run_id(*flags: str):
    cfg = parse(TrainLoraConfig, ["--model_type", "gemma", "--sae", SCOPE, *flags])
    cfg = cfg.resolved(GEMMA.d_model, GEMMA.n_layers, GEMMA.max_positions)
    return make_run_id(cfg, external_run([SCOPE], [12]), [12], GEMMA)


def test_the_papers_default_run_keeps_the_original_names(out_root):
    run = _run_id("--LoRA_layers", "after")
    assert run.sae_tag == "gemma-scope-2b-pt-res--layer_12--width_16k--average_l0_82"
    assert run.adapter_path() == adapter_dir("gemma", run.sae_tag, list(range(13, 26)), 64)
    assert run.adapter_path().name == "rank_64" and run.adapter_path().parent.name == "peft_13-25"
    assert run.json_path("CE_increase").name == "peft_13-25_rank_64_CE_increase_15k.json"


def test_example_count_and_every_other_setting_get_their_own_adapter_and_json_names(out_root):
    runs = {
        "default": _run_id(),
        "300": _run_id("--num_train_examples", "300"),
        "160": _run_id("--num_train_examples", "160"),
        "lr": _run_id("--lr", "1e-4"),
        "seed": _run_id("--seed", "1"),
        "kl": _run_id("--kl_impl", "naive"),
        "data": _run_id("--dataset", "pile"),
        "alpha": _run_id("--lora_alpha", "16"),
    }
    adapters = {k: r.adapter_path() for k, r in runs.items()}
    jsons = {k: r.json_path("val_loss") for k, r in runs.items()}
    assert len(set(adapters.values())) == len(runs) and len(set(jsons.values())) == len(runs)
    assert adapters["300"].name == "rank_64__n-300" and adapters["160"].name == "rank_64__n-160"
    assert jsons["lr"].name == "peft_0-25_rank_64_val_losses_15k__lr-0.0001.json"
    # a default given explicitly is the default: same names
    assert _run_id("--lr", "5e-5", "--seed", "42").adapter_path() == adapters["default"]


# --- train_lora on a tiny random world ---------------------------------------------------------------------
@pytest.fixture
def world(out_root):
    return make_world(out_root)


def make_world(out_root):
    """A saved 3-layer random Llama, a text file and one random TopK SAE at layer 1 (expansion 4, k 4)."""
    folder = out_root / "model"
    make_tiny_model("llama", n_layers=3).save_pretrained(folder)
    make_char_tokenizer().save_pretrained(folder)
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(300)]
    (out_root / "text.txt").write_text("\n\n".join(docs))
    save_sae(seed=0)
    return out_root


def save_sae(seed: int) -> None:
    torch.manual_seed(seed)
    TopKSAE(SaeConfig.from_expansion(32, 4, 4, hook_layer=1)).save(sae_dir("model", "normal", 4, 4, 1))


def argv(world, *extra: str) -> list[str]:
    return [
        "--device", "cpu", "--model", str(world / "model"), "--dataset", str(world / "text.txt"),
        "--ctx_len", "32", "--num_val_tokens", "96", "--rank", "4", "--num_train_examples", "4",
        "--sae_layer", "1", "--progress", "false", "--save_model", *extra,
    ]  # fmt: skip


def rows(world) -> list[dict]:
    with open(world / "data" / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_another_example_count_keeps_the_first_adapter_and_counts_as_its_own_run(world, capsys):
    (first,) = main(parse(TrainLoraConfig, argv(world)))
    adapter = first.run.adapter_path()
    before = (adapter / "adapter_model.safetensors").read_bytes()
    capsys.readouterr()
    (second,) = main(parse(TrainLoraConfig, argv(world, "--num_train_examples", "6")))
    out = capsys.readouterr().out
    assert "stopped before it finished" not in out and "Redoing" not in out
    assert second.run.adapter_path() != adapter
    assert (adapter / "adapter_model.safetensors").read_bytes() == before
    assert all(p.done() for p in plan_runs(parse(TrainLoraConfig, argv(world))))
    assert [r["num_examples"] for r in rows(world)] == ["4", "6"]


def test_every_output_has_a_run_record_naming_what_made_it_written_last(world):
    (summary,) = main(parse(TrainLoraConfig, argv(world)))
    ce = summary.run.json_path("CE_increase")
    record = read_record(ce)
    identity = record.identity
    assert record.kind == "lora_run" and not record.inferred
    assert identity["model_weights_digest"] and identity["sae_weights_digests"][0]
    assert identity["sae_layers"] == [1] and identity["lora_layers"] == [0, 1, 2] and identity["rank"] == 4
    assert identity["num_train_examples"] == 4 and identity["dataset"] == "text.txt"
    assert identity["settings"]["lr"] == 5e-4 and identity["settings"]["ctx_len"] == 32
    sae_record = paths.sae_dir("model", "normal", 4, 4, 1) / "run.json"
    assert record.parents == [
        str(sae_record) if sae_record.exists() else str(sae_dir("model", "normal", 4, 4, 1))
    ]
    for quantity in ("val_loss", "time"):
        assert read_record(summary.run.json_path(quantity)).identity_digest == record.identity_digest
    adapter_record = read_record(summary.run.adapter_path())
    assert adapter_record.kind == "lora_adapter" and adapter_record.identity_digest == record.identity_digest
    assert rows(world)[0]["fingerprint"] == record.identity_digest
    # the figures' loader reads the run under its variant name and passes over the records silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (loaded,) = load_lora_runs(None, "model")
    assert loaded.variant == summary.run.variant(with_examples=False) and loaded.num_examples == 4
    assert loaded.L_LoRA == summary.result.L_LoRA
    # the completion record is the newest file of the run
    written = [summary.run.json_path(q) for q in ("val_loss", "time")] + [
        summary.run.adapter_path() / "run.json"
    ]
    assert all(p.stat().st_mtime_ns <= record.path.stat().st_mtime_ns for p in written)


def test_an_identical_rerun_is_skipped_saying_so_and_overwrite_redoes_it_without_a_second_row(world, capsys):
    (summary,) = main(parse(TrainLoraConfig, argv(world)))
    capsys.readouterr()
    assert main(parse(TrainLoraConfig, argv(world))) == []
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert (
        len(lines) == 1 and "Skipping" in lines[0] and str(summary.run.json_path("CE_increase")) in lines[0]
    )
    assert "--overwrite" in lines[0]
    (again,) = main(parse(TrainLoraConfig, argv(world, "--overwrite")))
    assert again.run == summary.run and len(rows(world)) == 1
    # the original flag: --skip_existing false also redoes it
    assert len(main(parse(TrainLoraConfig, argv(world, "--skip_existing", "false")))) == 1
    assert len(rows(world)) == 1


def test_a_retrained_sae_makes_another_run_which_is_refused_not_replacing_the_outputs(world, capsys):
    (summary,) = main(parse(TrainLoraConfig, argv(world)))
    adapter = summary.run.adapter_path()
    before = (adapter / "adapter_model.safetensors").read_bytes()
    save_sae(seed=1)  # retrained: same folder, other weights
    with pytest.raises(OutputExistsError, match="sae_weights_digests.*--overwrite"):
        main(parse(TrainLoraConfig, argv(world)))
    assert (adapter / "adapter_model.safetensors").read_bytes() == before and len(rows(world)) == 1
    (redone,) = main(parse(TrainLoraConfig, argv(world, "--overwrite")))
    assert (adapter / "adapter_model.safetensors").read_bytes() != before
    # the replaced run's row goes with its outputs: one row, the new run's
    assert [r["fingerprint"] for r in rows(world)] == [read_record(adapter).identity_digest]


def test_a_legacy_adapter_without_a_record_is_not_replaced(world):
    (planned,) = plan_runs(parse(TrainLoraConfig, argv(world)))
    legacy = planned.run_id.adapter_path()
    legacy.mkdir(parents=True)
    (legacy / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    assert planned.status() == "different"
    with pytest.raises(OutputExistsError, match="without a run record"):
        main(parse(TrainLoraConfig, argv(world)))
    assert not (legacy / "run.json").exists() and sorted(p.name for p in legacy.iterdir()) == [
        "adapter_config.json"
    ]


# --- one done rule: train_lora.py and sweep.py agree ------------------------------------------------------
def test_the_sweep_and_train_lora_agree_on_done_in_every_case(world, capsys):
    from lorasae.sweep.config import SweepConfig
    from lorasae.sweep.run import is_done, lora_config, pending_runs, status
    from lorasae.sweep.run import main as sweep_main

    sweep_argv = [
        "--catalog", "ours", "--device", "cpu", "--model", str(world / "model"), "--dataset",
        str(world / "text.txt"), "--ctx_len", "32", "--num_val_tokens", "96", "--num_train_examples", "4",
        "--ranks", "2", "--axes", "l0", "--progress", "false", "--figures", "false", "--save_model", "true",
    ]  # fmt: skip
    cfg = parse(SweepConfig, sweep_argv)
    plan = sweep_main(cfg)
    (run,) = plan.runs

    def lora_done() -> bool:
        (planned,) = plan_runs(lora_config(cfg, run))
        return planned.done()

    record = plan_runs(lora_config(cfg, run))[0].run_id.done_path()
    assert is_done(cfg, run) and lora_done() and pending_runs(cfg, plan) == []  # complete
    saved = record.read_bytes()
    record.write_text('{"kind": "lora_run", "ident')  # damaged record
    assert not is_done(cfg, run) and not lora_done() and status(cfg, run) == "damaged"
    record.unlink()  # killed before the record
    assert not is_done(cfg, run) and not lora_done() and status(cfg, run) == "incomplete"
    record.write_bytes(saved)
    shutil.rmtree(plan_runs(lora_config(cfg, run))[0].run_id.adapter_path())  # adapter gone
    assert not is_done(cfg, run) and not lora_done() and status(cfg, run) == "incomplete"


# --- the store finds adapters by their records --------------------------------------------------------------
def test_the_adapter_finder_reads_rank_and_span_from_the_record_not_the_folder_name(world):
    (summary,) = main(parse(TrainLoraConfig, argv(world)))
    adapter = summary.run.adapter_path()
    moved = adapter.with_name("rank_64")  # a folder name that lies about the rank
    adapter.rename(moved)
    assert find_adapter("model", summary.run.sae_tag, rank=4, lora_span="0-2") == moved
    with pytest.raises(FileNotFoundError):
        find_adapter("model", summary.run.sae_tag, rank=64)


def test_runs_with_other_settings_are_their_own_configuration_in_the_figures(out_root):
    from lorasae.results.timing import select_checkpoint_runs

    top = out_root / "data" / "TopK"
    for pct, variant in ((50, "every-4"), (100, "every-4"), (100, "")):
        folder = f"model/expansion_4_L0_4-{pct}pct"
        name = "peft_0-2_rank_4_{}_0.004k" + (f"__{variant}" if variant else "") + ".json"
        for quantity, suffix, value in (("val_loss", "val_losses", [2.0, 1.5]), ("time", "time", [0, 1])):
            path = top / quantity / folder / name.format(suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
            (path.parent / (path.name + ".run.json")).write_text("{}")  # records are passed over
    runs = load_lora_runs(None, "model")
    assert sorted(r.variant for r in runs) == ["", "every-4", "every-4"]
    config, chosen = select_checkpoint_runs(runs)  # the configuration with the most checkpoints
    assert config[4] == "every-4" and [pct for pct, _ in chosen] == [50.0, 100.0]
    config, chosen = select_checkpoint_runs([r for r in runs if not r.variant])
    assert len(config) == 4 and [pct for pct, _ in chosen] == [100.0]
