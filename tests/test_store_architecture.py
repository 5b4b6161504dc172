"""`--architecture` in the SAE-choice flags (issue 28, loose end 1): the store picks our SAE by the
architecture its run record (or, without one, its cfg.json) names, never by its folder name. With a TopK,
a BatchTopK and a JumpReLU SAE of the same width at one layer, each `--architecture` finds its own, the
default finds the TopK one (today's choice), and an architecture with none saved is a one-line error
naming the folder searched; every script that picks our SAE by family takes the flag."""

from __future__ import annotations

from pathlib import Path

import pytest
from flag_glossary_helpers import parse_script

from lorasae.core.cli import parse
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.sae.batchtopk import BatchTopKConfig, BatchTopKSAE
from lorasae.sae.sources import SaeNotFoundError
from lorasae.store import find_sae, our_sae_runs, sae_record
from lorasae.store.saes import chosen_sae

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = ("topk", "batchtopk", "jumprelu")
TRAIN = ["--num_train_tokens", "2048", "--num_val_tokens", "1024", "--eval_every_pct", "100"]
TRAIN += ["--checkpoint_every_pct", "100", "--log_every_steps", "100"]


@pytest.fixture(scope="module")
def store(small_world, tmp_path_factory):
    """A TopK, a BatchTopK and a JumpReLU SAE of the same width at the default layer, written by
    train_sae.py (with their run records) into a fresh output root."""
    from lorasae.train.config import TrainSaeConfig
    from lorasae.train.sae_trainer import train_sae

    root = tmp_path_factory.mktemp("arch_store")
    mp = pytest.MonkeyPatch()
    mp.setenv("LORASAE_ROOT", str(root))
    common = ["--device", "cpu", "--model", str(small_world), "--dataset", "builtin", *TRAIN]
    finals = {
        a: Path(train_sae(parse(TrainSaeConfig, [*common, "--architecture", a])).final_dir) for a in ARCHS
    }
    yield str(small_world), finals
    mp.undo()


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_finds_its_own_sae(store, arch):
    model, finals = store
    assert len({f.parent.parent for f in finals.values()}) == 1  # one kind folder, one layer, one width
    assert Path(find_sae(model, architecture=arch).source) == finals[arch]
    # train_lora.py's runs: every checkpoint run of that architecture's SAE
    runs = our_sae_runs(model, architecture=arch)
    assert runs and all(sae_record(r.refs[0].source).get("architecture") == arch for r in runs)


def test_the_default_architecture_is_topk(store):
    model, finals = store
    assert Path(find_sae(model).source) == finals["topk"]
    assert our_sae_runs(model) == our_sae_runs(model, architecture="topk")


def test_an_architecture_with_none_saved_is_a_one_line_error_naming_the_folder(store):
    model, finals = store
    searched = finals["topk"].parent.parent  # saved_saes/<model>/normal
    with pytest.raises(SaeNotFoundError) as err:
        find_sae(model, architecture="matryoshka")
    text = str(err.value)
    assert "\n" not in text and "matryoshka" in text and str(searched) in text
    with pytest.raises(SaeNotFoundError, match="matryoshka") as err:
        our_sae_runs(model, architecture="matryoshka")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="--architecture 'nope'.*topk.*jumprelu"):
        find_sae(model, architecture="nope")


def test_the_architecture_comes_from_cfg_json_not_the_folder_name(tmp_path, monkeypatch, small_world):
    """A record-less BatchTopK SAE saved under a TopK-looking tag is a BatchTopK SAE."""
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    folder = tmp_path / "saved_saes" / "tiny" / "normal"
    BatchTopKSAE(BatchTopKConfig(32, 256, 2, hook_layer=1)).save(
        folder / "expansion_8_L0_2" / "model.layers.1"
    )
    TopKSAE(SaeConfig(32, 256, 3, hook_layer=1)).save(
        folder / "batchtopk_expansion_8_L0_3" / "model.layers.1"
    )
    model = str(small_world)  # saved under its key, `tiny`
    assert find_sae(model, architecture="batchtopk").tag == "expansion_8_L0_2"
    assert find_sae(model).tag == "batchtopk_expansion_8_L0_3"


SAE_CHOOSERS = ["saebench", "positives", "tune_alpha", "steering", "interp", "dashboard"]


@pytest.mark.parametrize("script", SAE_CHOOSERS)
def test_every_eval_picks_our_sae_by_architecture(store, script):
    model, finals = store
    assert parse_script(script, ["--model", model]).architecture == "topk"
    for arch in ARCHS:
        args = parse_script(script, ["--model", model, "--architecture", arch])
        assert Path(chosen_sae(args).source) == finals[arch]
    given = parse_script(
        script, ["--model", model, "--architecture", "jumprelu", "--sae", str(finals["topk"])]
    )
    assert Path(chosen_sae(given).source) == finals["topk"]  # --sae names the SAE itself


def test_train_lora_and_benchmarks_pick_our_sae_by_architecture(store):
    from lorasae.lmeval.pairing import resolve_pairing
    from lorasae.lmeval.plan import plan_run
    from lorasae.lora.plan import resolve_runs
    from lorasae.model.load import model_shape

    model, finals = store
    n_layers = model_shape(model).n_layers
    for arch in ARCHS:
        cfg = parse_script(
            "train_lora", ["--model", model, "--architecture", arch, "--checkpoint_percent", "100"]
        )
        (run,) = resolve_runs(cfg)
        assert sae_record(run.refs[0].source).get("architecture") == arch
        bench = parse_script(
            "benchmarks",
            ["--model", model, "--model_variant", "base", "--splice_sae", "--architecture", arch],
        )
        plan = resolve_pairing(bench, plan_run(bench), n_layers)
        assert [Path(s) for s, _ in plan.sae_sources] == [finals[arch]]
