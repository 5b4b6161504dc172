"""An SAE folder's name carries every setting that changes its weights when off its default (issue 25:
the path is unique per identity): two train_sae.py runs differing only in --num_train_tokens or --lr land
in two folders (`expansion_8_L0_1__n-20000`, `..._lr-0.001`), neither replacing the other; the run with
default flags keeps the original's plain name; settings that change only what is measured share the
folder, and a rerun differing only there is refused in one line. The store prefers the plain SAE and says
so, refuses to guess among variants only, and train_lora.py names its results after the SAE's folder.
Trained for real on the test world, installed as the built-in `tiny` model (so its default data is used)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lorasae.core.cli import parse
from lorasae.core.errors import OutputExistsError
from lorasae.sae.sources import SaeNotFoundError
from lorasae.train.config import TrainSaeConfig

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--device", "cpu", "--model_type", "tiny", "--eval_every_pct", "50", "--checkpoint_every_pct", "50",
        "--curve_val_tokens", "2048", "--final_val_tokens", "2048", "--log_every_steps", "1000"]  # fmt: skip


def _cfg(*extra: str) -> TrainSaeConfig:
    return parse(TrainSaeConfig, [*FAST, *extra])


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(small_world, tmp_path_factory):
    """A root holding the built-in model (the test world) and three SAEs of one (expansion, k, layer):
    20k tokens (B), 20k tokens at --lr 1e-3 (C), then the default run (A, 200k tokens), with each folder's
    bytes right after its run."""
    from lorasae.train.sae_trainer import train_sae

    root = tmp_path_factory.mktemp("variants")
    shutil.copytree(small_world, root / "saved_models" / "tiny")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORASAE_ROOT", str(root))
        b = train_sae(_cfg("--num_train_tokens", "20000")).final_dir.parent
        b_bytes = _bytes(b)
        c = train_sae(_cfg("--num_train_tokens", "20000", "--lr", "1e-3")).final_dir.parent
        c_bytes = _bytes(c)
        a = train_sae(_cfg()).final_dir.parent
        yield {"root": root, "a": a, "b": b, "c": c, "b_bytes": b_bytes, "c_bytes": c_bytes}


@pytest.fixture
def in_root(trained, monkeypatch):
    monkeypatch.setenv("LORASAE_ROOT", str(trained["root"]))
    return trained


def test_runs_differing_only_in_budget_or_lr_get_their_own_folders_and_leave_the_others_untouched(in_root):
    a, b, c = in_root["a"], in_root["b"], in_root["c"]
    assert a.name == "expansion_8_L0_1"  # the default run (200k tokens on small models): the plain name
    assert b.name == "expansion_8_L0_1__n-20000"
    assert c.name == "expansion_8_L0_1__n-20000_lr-0.001"
    assert len({a, b, c}) == 3 and a.parent == b.parent == c.parent
    for folder in (a, b, c):  # each complete: final SAE with its record, and its 50 % checkpoint beside it
        assert (folder / "model.layers.1" / "cfg.json").is_file()
        assert (folder / "model.layers.1" / "run.json").is_file()
        assert (folder.parent / f"{folder.name}-50pct" / "model.layers.1" / "run.json").is_file()
    assert _bytes(b) == in_root["b_bytes"] and _bytes(c) == in_root["c_bytes"]  # later runs wrote beside
    # each curve of its own: only the default SAE's keeps the original's file name
    curves = sorted(p.name for p in (in_root["root"] / "data" / "TopK" / "val_loss" / "tiny").glob("*.json"))
    assert "normal_SAE.json" in curves
    assert "normal_expansion_8_L0_1__n-20000__layer_1_SAE.json" in curves


def test_the_checkpoint_tag_of_a_variant_still_parses(in_root):
    from lorasae.store.tags import parse_our_tag, parse_sae_tag, source_tag

    tag = f"{in_root['b'].name}-50pct"
    assert parse_sae_tag(tag).checkpoint_pct == 50 and parse_sae_tag(tag).l0 == 1
    ours = parse_our_tag(tag)
    assert ours is not None and ours.pct == 50 and ours.family == in_root["b"].name
    assert source_tag(str(in_root["b"] / "model.layers.1")) == in_root["b"].name


def test_an_identical_rerun_is_skipped_and_leaves_the_folder_unchanged(in_root, capsys):
    from lorasae.train.sae_trainer import train_sae

    before = _bytes(in_root["b"])
    result = train_sae(_cfg("--num_train_tokens", "20000"))
    assert result.final_dir.parent == in_root["b"] and _bytes(in_root["b"]) == before
    assert "Skipped:" in capsys.readouterr().out


def test_a_rerun_differing_only_in_what_is_measured_is_refused_saying_the_weights_are_the_same(in_root):
    from lorasae.train.sae_trainer import train_sae

    before = _bytes(in_root["b"])
    with pytest.raises(OutputExistsError) as err:
        train_sae(_cfg("--num_train_tokens", "20000", "--eval_every_pct", "25"))
    message = str(err.value)
    assert "\n" not in message and "--eval_every_pct" in message and "not the weights" in message
    assert "--overwrite" in message and str(in_root["b"]) in message
    assert _bytes(in_root["b"]) == before


def test_the_store_picks_the_plain_sae_and_says_so(in_root, capsys):
    from lorasae.store.saes import find_sae, our_sae_runs

    runs = our_sae_runs("tiny")  # one per checkpoint of the chosen family: 50 % and 100 %
    family = {in_root["a"].name, f"{in_root['a'].name}-50pct", f"{in_root['a'].name}-100pct"}
    assert runs and {Path(run.refs[0].source).parent.name for run in runs} <= family
    out = capsys.readouterr().out
    assert "default settings" in out and in_root["b"].name in out and in_root["c"].name in out
    assert Path(find_sae("tiny").source).parent == in_root["a"]


def test_the_store_refuses_to_guess_among_variants_only(in_root, tmp_path, monkeypatch):
    from lorasae.store.saes import our_sae_runs

    shape = _shape()  # of the root holding the model (the other root has only the SAEs)
    other = tmp_path / "saved_saes" / "tiny" / "normal"
    for folder in (in_root["b"], in_root["c"]):
        shutil.copytree(folder, other / folder.name)
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    with pytest.raises(SaeNotFoundError) as err:
        our_sae_runs("tiny", [1], shape=shape)
    message = str(err.value)
    assert in_root["b"].name in message and in_root["c"].name in message and "--sae" in message


def _shape():
    from lorasae.model.load import model_shape

    return model_shape("tiny")


def test_train_lora_on_a_variant_sae_writes_under_its_own_tag(in_root):
    from lorasae.lora.config import TrainLoraConfig
    from lorasae.lora.run import main as train_lora_main

    flags = ["--device", "cpu", "--model_type", "tiny", "--LoRA_layers", "all", "--rank", "2",
             "--num_train_examples", "8", "--num_val_tokens", "2048", "--progress", "false"]  # fmt: skip
    (default,) = train_lora_main(parse(TrainLoraConfig, [*flags, "--checkpoint_percent", "100"]))
    assert default.run.sae_tag == f"{in_root['a'].name}-100pct"  # found by default: the plain SAE
    variant_sae = str(in_root["b"] / "model.layers.1")
    (variant,) = train_lora_main(parse(TrainLoraConfig, [*flags, "--sae", variant_sae]))
    assert variant.run.sae_tag == in_root["b"].name != default.run.sae_tag
    ours = [Path(p) for key, p in variant.paths.items() if key != "results"]  # results.csv: one row each
    assert ours and all(in_root["b"].name in p.parts for p in ours)
    assert not set(ours) & {Path(p) for p in default.paths.values()}


def test_kl_fine_tunes_differing_only_in_lr_get_two_folders(in_root):
    from lorasae.train.sae_trainer import train_sae

    parent = str(in_root["a"] / "model.layers.1")
    kl = [
        "--init_sae",
        parent,
        "--objective",
        "kl",
        "--num_train_tokens",
        "4096",
        "--checkpoint_every_pct",
        "100",
    ]
    first = train_sae(_cfg(*kl)).final_dir
    first_bytes = _bytes(first)
    second = train_sae(_cfg(*kl, "--lr", "1e-3")).final_dir
    assert first.parent.name == "expansion_8_L0_1__kl-ft__n-4096"
    assert second.parent.name == "expansion_8_L0_1__kl-ft__n-4096_lr-0.001"
    assert (second / "run.json").is_file() and _bytes(first) == first_bytes


def test_measurement_settings_are_not_in_the_name_and_weight_settings_are(in_root):
    from lorasae.train.state import planned_dir

    base = _cfg()
    assert planned_dir(base) == in_root["a"] / "model.layers.1"
    for quiet in (dict(eval_every_pct=5.0), dict(checkpoint_every_pct=10), dict(final_val_tokens=4096)):
        assert planned_dir(replace(base, **quiet)) == planned_dir(base)
    for loud, part in ((dict(seed=3), "seed-3"), (dict(num_val_tokens=4096), "val-4096"),
                       (dict(batch_size=4), "bs-4"), (dict(auxk_alpha=0.5), "auxk-0.5")):  # fmt: skip
        assert planned_dir(replace(base, **loud)).parent.name == f"expansion_8_L0_1__{part}"


def test_an_sae_folder_names_its_optimiser_only_when_it_is_not_what_auto_picks_on_its_device(monkeypatch):
    from lorasae.train import optim
    from lorasae.train.sae_names import optimizer_setting

    # the CPU: auto is Adam, and an explicit adam8bit falls back to Adam, so none of them is named
    assert optimizer_setting("auto", "cpu") == ("adam", "adam")
    assert optimizer_setting("adam", "cpu") == ("adam", "adam")
    assert optimizer_setting("adam8bit", "cpu") == ("adam", "adam")
    # CUDA with bitsandbytes: auto is 8-bit Adam, so an explicit adam differs from it and is named
    monkeypatch.setattr(optim, "bitsandbytes_available", lambda: True)
    cuda = torch.device("cuda:0")  # a device object: no GPU is needed to name one
    assert optimizer_setting("auto", cuda) == ("adam8bit", "adam8bit")
    assert optimizer_setting("adam", cuda) == ("adam", "adam8bit")
    from lorasae.core.paths import settings_variant
    from lorasae.train.sae_names import SAE_NAME_KEYS

    value, default = optimizer_setting("adam", cuda)
    assert settings_variant({"optimizer": value}, {"optimizer": default}, SAE_NAME_KEYS) == "opt-adam"
