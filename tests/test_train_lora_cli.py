"""train_lora end to end on a saved tiny random model: every output of SPEC §3.4, the checkpoint loop,
several SAEs at once, reloading the adapter, and the error messages."""

from __future__ import annotations

import csv
import dataclasses
import json
import random

import pytest
import torch
from conftest import make_char_tokenizer, make_tiny_model

from lorasae.core.cli import parse
from lorasae.core.paths import sae_dir
from lorasae.core.results_columns import RESULTS_COLUMNS
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.run import main
from lorasae.lora.trainer import sae_splices
from lorasae.model.adapters import load_peft_model
from lorasae.model.ce import mean_ce
from lorasae.model.load import LayerOutOfRangeError, load_model, special_token_ids
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.sae.sources import SaeNotFoundError, SaeShapeError
from lorasae.store import find_adapter

WORDS = "the a cat dog sat on mat ran far and then slept under big red tree house".split()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def world(out_root):
    """A saved 3-layer random Llama with a character tokenizer, a text file, and random SAEs for layers
    1 and 2 saved as 50% and 100% checkpoints under saved_saes/model/normal/."""
    folder = out_root / "model"
    make_tiny_model("llama", n_layers=3).save_pretrained(folder)
    make_char_tokenizer().save_pretrained(folder)
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(300)]
    (out_root / "text.txt").write_text("\n\n".join(docs))
    for layer in (1, 2):
        for pct in (50, 100):
            torch.manual_seed(layer * 100 + pct)
            sae = TopKSAE(SaeConfig.from_expansion(32, 4, 4, hook_layer=layer))
            sae.save(sae_dir("model", "normal", 4, 4, layer, pct=pct))
    return out_root


def argv(world, *extra: str) -> list[str]:
    return [
        "--device", "cpu", "--model", str(world / "model"), "--dataset", str(world / "text.txt"),
        "--ctx_len", "32", "--num_val_tokens", "96", "--rank", "4", "--num_train_examples", "4",
        "--eval_every", "2", "--val_batch_size", "4", "--progress", "false", *extra,
    ]  # fmt: skip


def test_one_checkpoint_writes_every_output_and_the_adapter_reproduces_l_lora(world, capsys):
    (summary,) = main(
        parse(TrainLoraConfig, argv(world, "--sae_layer", "1", "--checkpoint_percent", "100", "--save_model"))
    )
    out = capsys.readouterr().out
    assert "gap closed" in out and "expansion_4_L0_4-100pct" in out
    result = summary.result
    tag = "expansion_4_L0_4-100pct"
    ce = json.loads(summary.run.json_path("CE_increase").read_text())
    assert set(ce) - {"gap_flag"} == {"initial", "converged", "difference", "base"}
    assert ce.get("gap_flag") == result.gap_flag  # the random tiny model: often no gap (lorasae.core.gap)
    assert ce["initial"] == result.L_SAE and ce["converged"] == result.L_LoRA and ce["base"] == result.L_base
    assert ce["difference"] == pytest.approx(ce["initial"] - ce["converged"])
    val = json.loads(summary.run.json_path("val_loss").read_text())
    minutes = json.loads(summary.run.json_path("time").read_text())
    assert val[0] == ce["initial"] and val[-1] == ce["converged"] and len(val) == len(minutes) == 3
    assert minutes[0] == 0 and minutes == sorted(minutes)
    # the settings off their defaults are in the names (the example count is already)
    name = summary.run.json_path("val_loss").name
    assert name.startswith("peft_0-2_rank_4_val_losses_0.004k__data-text.txt_") and "every-2" in name
    with open(world / "data" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and tuple(rows[0]) == RESULTS_COLUMNS
    row = rows[0]
    assert row["sae_tag"] == tag and row["sae_layers"] == "1" and row["lora_layers"] == "0-2"
    assert row["checkpoint_pct"] == "100" and row["sae_width"] == "128.0" and row["sae_l0"] == "4.0"
    assert row["gap_flag"] == (result.gap_flag or "")
    if result.gap_flag:
        assert row["frac_gap_closed"] == "" and "gap closed n/a (no gap)" in out
    else:
        assert float(row["frac_gap_closed"]) == pytest.approx(result.frac_gap_closed, abs=1e-5)
    from lorasae.results import load_results_csv

    df = load_results_csv(world)
    assert df["rank"].tolist() == [4] and df["n_lora_layers"].tolist() == [3]

    # reloading the saved adapter onto a fresh model reproduces L_LoRA
    adapter = find_adapter("model", tag, rank=4, base=world)
    assert adapter == summary.run.adapter_path()
    assert adapter.parent == world / "saved_models" / "model" / tag / "peft_0-2"
    assert adapter.name.startswith("rank_4__n-4_data-text.txt")
    model, tokenizer = load_model(str(world / "model"), "cpu")
    peft_model = load_peft_model(model, adapter)
    from lorasae.sae.sources import load_sae

    sae = load_sae(sae_dir("model", "normal", 4, 4, 1, pct=100))
    from lorasae.model.data import load_token_split

    split = load_token_split(str(world / "text.txt"), tokenizer, 32, 96, 42)
    again = mean_ce(peft_model, split.val, 4, sae_splices({1: sae}, special_token_ids(tokenizer)))
    assert again == pytest.approx(result.L_LoRA, abs=1e-5)


def test_checkpoint_loop_and_after_and_several_saes(world):
    summaries = main(parse(TrainLoraConfig, argv(world, "--sae_layer", "1", "--LoRA_layers", "after")))
    assert [s.checkpoint_pct for s in summaries] == [50, 100]
    for pct, summary in zip((50, 100), summaries):
        ce = summary.run.json_path("CE_increase")
        assert ce.exists() and ce.parent.name == f"expansion_4_L0_4-{pct}pct"
        assert ce.name.startswith("peft_2-2_rank_4_CE_increase_0.004k__")
    # two SAEs trained jointly (the paper's multiple-SAE experiment)
    (joint,) = main(parse(TrainLoraConfig, argv(world, "--sae_layer", "1,2", "--checkpoint_percent", "50")))
    assert joint.sae_layers == [1, 2] and joint.run.sae_tag == "layers_1+2__expansion_4_L0_4-50pct"
    assert joint.result.L_SAE != summaries[0].result.L_SAE  # a different splice
    # the same two SAEs as external sources, repeated --sae: the same run (identity), so it is skipped;
    # --overwrite redoes it and replaces its results.csv row
    sources = [str(sae_dir("model", "normal", 4, 4, layer, pct=50)) for layer in (1, 2)]
    external_argv = argv(world, "--sae", sources[0], "--sae", sources[1])
    assert main(parse(TrainLoraConfig, external_argv)) == []
    (external,) = main(parse(TrainLoraConfig, [*external_argv, "--overwrite"]))
    assert external.sae_layers == [1, 2] and external.run == joint.run
    assert external.result.L_SAE == pytest.approx(joint.result.L_SAE, abs=1e-6)
    with open(world / "data" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["sae_layers"] for r in rows] == ["1", "1", "1-2"]


def test_several_invocations_share_one_session_and_match_separate_runs(world, monkeypatch):
    """main_many (what sweep.py and the demo call) loads the model once for invocations on the same model
    and data, and gives each run exactly what a separate train_lora.py call gives."""
    from lorasae.lora import run as lora_run

    configs = [
        parse(TrainLoraConfig, argv(world, "--sae_layer", "1", "--checkpoint_percent", "50")),
        parse(TrainLoraConfig, argv(world, "--sae_layer", "2", "--checkpoint_percent", "100", "--rank", "2")),
        parse(
            TrainLoraConfig, argv(world, "--sae_layer", "1", "--checkpoint_percent", "50", "--ctx_len", "16")
        ),
    ]
    separate = [main(cfg)[0].result for cfg in configs]
    loads = []
    real_load = lora_run.load_model
    monkeypatch.setattr(lora_run, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    # identical reruns are skipped unless --overwrite
    assert lora_run.main_many(configs) == [] and loads == []
    redo = [dataclasses.replace(cfg, overwrite=True) for cfg in configs]
    together = [s.result for s in lora_run.main_many(redo)]
    assert len(loads) == 2  # the third run has another context length: a new session
    for a, b in zip(separate, together):
        assert (b.L_base, b.L_SAE) == (a.L_base, a.L_SAE)
        assert b.L_LoRA == pytest.approx(a.L_LoRA, abs=1e-6)


def test_errors_are_clear(world):
    with pytest.raises(SaeNotFoundError, match=r"normal/expansion_4_L0_4-50pct/model\.layers\.1"):
        main(parse(TrainLoraConfig, argv(world, "--sae_layer", "0")))  # lists what exists
    with pytest.raises(SaeNotFoundError, match="checkpoints: 50%, 100%"):
        main(parse(TrainLoraConfig, argv(world, "--sae_layer", "1", "--checkpoint_percent", "30")))
    with pytest.raises(LayerOutOfRangeError, match="3 decoder layers"):
        main(
            parse(
                TrainLoraConfig,
                argv(world, "--sae_layer", "1", "--LoRA_layers", "1-5", "--checkpoint_percent", "50"),
            )
        )
    wide = world / "wide_sae"
    TopKSAE(SaeConfig.from_expansion(48, 2, 4, hook_layer=1)).save(wide)
    with pytest.raises(SaeShapeError, match="d_model = 32"):
        main(parse(TrainLoraConfig, argv(world, "--sae", str(wide))))
    with pytest.raises(LayerOutOfRangeError):
        main(parse(TrainLoraConfig, argv(world, "--sae", str(wide), "--sae_layer", "7")))
