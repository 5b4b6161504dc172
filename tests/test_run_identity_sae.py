"""Run identity on the SAE side (issue 25): every SAE folder train_sae.py writes has a run record naming
what made it; an identical rerun is skipped and says so; every SAE has its own curve file (the default
SAE keeps the original's name) and readers find the curve of the SAE they mean through the records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sae_train_helpers import fast_config, write_tiny_world

from lorasae.core import paths
from lorasae.core.records import model_weights_digest, read_record
from lorasae.results import load_sae_curve

pytestmark = pytest.mark.usefixtures("fast_names")  # fast runs keep plain names

# 10 steps, 3 curve points, checkpoints at 50 % and 100 %
SHORT = {"num_train_tokens": 640, "checkpoint_every_pct": 50, "eval_every_pct": 50}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_world(tmp_path_factory.mktemp("identity_world"))


def _train(world, **overrides):
    from lorasae.train.sae_trainer import train_sae

    return train_sae(fast_config(*world, **{**SHORT, **overrides}))


def test_every_sae_folder_has_a_record_naming_model_weights_data_layer_and_settings(world, out_root):
    model_dir, data = world
    result = _train(world, lr=1e-3)
    final = result.final_dir
    record = read_record(final)
    assert record is not None and record.kind == "sae" and not record.inferred
    assert record.get("model_weights") == model_weights_digest(model_dir) is not None
    assert record.get("data") == str(data) and record.get("layer") == 1
    assert record.get("architecture") == "topk" and record.get("kind") == "normal"
    assert record.get("settings")["lr"] == 1e-3 and record.get("settings")["k"] == 4
    assert record.get("checkpoint_pct") is None and record.extra["result"]["val_loss"] == result.val_loss
    for pct in (50, 100):
        ckpt = read_record(result.checkpoint_dirs[pct])
        assert ckpt is not None and ckpt.get("checkpoint_pct") == pct
        assert ckpt.parents == [paths.portable(final)]  # a checkpoint's parent: its run's final SAE
        assert {k: v for k, v in ckpt.identity.items() if k != "checkpoint_pct"} == {
            k: v for k, v in record.identity.items() if k != "checkpoint_pct"
        }
    curve = read_record(Path(paths.from_portable(record.extra["curves"]["val_loss"])))
    assert curve is not None and curve.kind == "sae_curve" and curve.parents == [paths.portable(final)]


def test_init_sae_is_recorded_as_a_parent_with_its_digest(world, out_root):
    from lorasae.core.fingerprint import weights_digest

    first = _train(world)
    second = _train(world, k=2, init_sae=first.final_dir)
    record = read_record(second.final_dir)
    assert record.get("init_sae") == {
        "source": paths.portable(first.final_dir),
        "weights": weights_digest(first.final_dir),
    }
    assert paths.portable(first.final_dir) in record.parents


def test_identical_rerun_is_skipped_and_says_so(world, out_root, capsys):
    first = _train(world)
    weights = first.final_dir / "sae_weights.safetensors"
    before = weights.stat().st_mtime_ns
    capsys.readouterr()
    again = _train(world)
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.startswith("Skipped:")]
    assert len(skipped) == 1 and str(first.final_dir) in skipped[0] and "--overwrite" in skipped[0]
    assert weights.stat().st_mtime_ns == before
    assert again.val_loss == first.val_loss and again.final_dir == first.final_dir
    assert again.val_fvu == first.val_fvu


def test_overwrite_trains_an_identical_run_again(world, out_root, capsys):
    first = _train(world)
    weights = first.final_dir / "sae_weights.safetensors"
    before = weights.stat().st_mtime_ns
    capsys.readouterr()
    _train(world, overwrite=True)
    assert "Skipped:" not in capsys.readouterr().out
    assert weights.stat().st_mtime_ns != before


def test_a_run_killed_before_its_record_is_trained_again(world, out_root, capsys):
    first = _train(world)
    (first.final_dir / "run.json").unlink()  # what a kill between the last checkpoint and the record leaves
    capsys.readouterr()
    _train(world)
    out = capsys.readouterr().out
    assert "Skipped:" not in out and "again" in out
    assert read_record(first.final_dir) is not None


def test_another_sae_keeps_the_default_sae_curve(world, out_root):
    # the test model (d=32, 3 layers): the default SAE is layer 1, expansion 8, k=round(64*32/2304)=1
    # train_sae.py's default budget (the fast runs' naming defaults, `fast_names`): the plain names
    default = _train(world, k=None, expansion_factor=8, num_train_tokens=3840)
    default_file = paths.sae_curve_path("val_loss", "model", "normal")
    assert json.loads(default_file.read_text()) == default.val_loss
    other = _train(world, k=4, expansion_factor=4, num_train_tokens=3840)
    other_file = paths.sae_curve_path("val_loss", "model", "normal", sae="expansion_4_L0_4/model.layers.1")
    assert other_file.name == "normal_expansion_4_L0_4__layer_1_SAE.json"
    assert json.loads(other_file.read_text()) == other.val_loss
    assert json.loads(default_file.read_text()) == default.val_loss  # not replaced
    # the readers: the default SAE's curve by default, another SAE's through its record
    assert load_sae_curve(None, "model", "normal").ce.tolist() == default.val_loss
    assert load_sae_curve(None, "model", "normal", sae_tag="expansion_4_L0_4").ce.tolist() == other.val_loss
    assert load_sae_curve(None, "model", "normal", sae_tag="expansion_8_L0_1").ce.tolist() == default.val_loss
    # the timing figure's inputs: the curve of the SAE whose checkpoints the LoRA runs used
    from test_plotting import _lora_files

    from lorasae.results import load_timing_data

    for pct in (50, 100):
        _lora_files(out_root, "model", f"expansion_8_L0_1-{pct}pct", 2, 2, 4, 300, 5.0, 0.5)
    with pytest.warns(UserWarning, match="no e2e SAE curve"):
        assert load_timing_data(None, "model").topk.ce.tolist() == default.val_loss
    for pct in (50, 100):
        _lora_files(out_root, "model", f"expansion_4_L0_4-{pct}pct", 2, 2, 4, 300, 5.0, 0.5)
    with pytest.warns(UserWarning, match="no e2e SAE curve"):
        chosen = load_timing_data(None, "model", sae_tag="expansion_4_L0_4")
    assert chosen.topk.ce.tolist() == other.val_loss


def test_sae_trained_on_another_model_of_the_same_width_is_refused_when_spliced(world, out_root, tmp_path):
    from conftest import make_tiny_model

    from lorasae.store import external_ref, load_bundle
    from lorasae.store.load import SaeModelMismatchError

    model_dir, _ = world
    other = tmp_path / "other_model"  # same architecture and width, other weights
    make_tiny_model("llama", n_layers=3, d=32, seed=1).save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (model_dir / name).exists():
            (other / name).write_bytes((model_dir / name).read_bytes())
    final = _train(world).final_dir
    with pytest.raises(SaeModelMismatchError) as caught:
        load_bundle(str(other), [external_ref(str(final), None)])
    message = str(caught.value)
    assert "\n" not in message and str(final) in message and "run.json" in message
    assert load_bundle(str(model_dir), [external_ref(str(final), None)]).layer == 1


def test_the_store_reads_what_an_sae_is_from_its_record_not_its_folder_name(world, out_root):
    from lorasae.core.records import SAE_RECORD_KIND
    from lorasae.sae import SaeConfig, TopKSAE
    from lorasae.store import find_sae
    from lorasae.store.sae_records import sae_record

    model_dir, _ = world
    folder = out_root / "saved_saes" / "model" / "normal"
    legacy = folder / "expansion_8_L0_1" / "model.layers.1"  # saved before records: a record is inferred
    TopKSAE(SaeConfig(32, 256, 1, hook_layer=1)).save(legacy)
    assert Path(find_sae(str(model_dir)).source) == legacy
    assert read_record(legacy) is None  # finding an SAE writes nothing (a failing command changes nothing)
    inferred = sae_record(legacy)
    assert inferred.inferred and inferred.kind == SAE_RECORD_KIND
    from lorasae.core.records import drop_deferred, write_deferred

    drop_deferred()  # the command failed: nothing is written
    assert read_record(legacy) is None
    inferred = sae_record(legacy)
    assert write_deferred() == [legacy / "run.json"]  # the command finished: written once
    assert read_record(legacy) == inferred
    assert inferred.get("settings") == {"expansion_factor": 8, "k": 1} and inferred.get("layer") == 1
    # a folder whose record says k=2 is a k=2 SAE, whatever its name says
    renamed = folder / "expansion_8_L0_5" / "model.layers.1"
    TopKSAE(SaeConfig(32, 256, 2, hook_layer=1)).save(renamed)
    identity = dict(inferred.identity, settings={"expansion_factor": 8, "k": 2})
    from lorasae.core.records import write_record

    write_record(renamed, SAE_RECORD_KIND, identity)
    assert Path(find_sae(str(model_dir), k=2).source) == renamed
    with pytest.raises(Exception, match="No normal SAE"):
        find_sae(str(model_dir), k=5)


def test_an_sae_of_another_model_in_the_same_folder_is_refused_naming_the_model(world, out_root, tmp_path):
    from conftest import make_tiny_model

    from lorasae.core.errors import OutputExistsError
    from lorasae.train.sae_trainer import train_sae

    model_dir, data = world
    other = tmp_path / "model"  # named like the first: the same output folders
    make_tiny_model("llama", n_layers=3, d=32, seed=1).save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (model_dir / name).exists():
            (other / name).write_bytes((model_dir / name).read_bytes())
    final = _train(world).final_dir
    weights = (final / "sae_weights.safetensors").read_bytes()
    with pytest.raises(OutputExistsError, match=r"other settings or inputs \(model, model weights\)"):
        train_sae(fast_config(other, data, **SHORT))
    assert (final / "sae_weights.safetensors").read_bytes() == weights
