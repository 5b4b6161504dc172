"""Issue 28 item 1: `train_sae.py --architecture batchtopk | matryoshka | jumprelu` trains from flags and
from the example config file of configs/, saves a folder under its own name (topk's names unchanged),
which `load_sae` and `sae_lens` both load with equal outputs, and the architecture's options reach the
dictionary (BatchTopK's threshold estimate, Matryoshka's prefixes, JumpReLU's bandwidth and L0 λ)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from required_libs import require
from sae_train_helpers import fast_args, write_tiny_world

from lorasae.config_files import parse_with_config_file
from lorasae.records import read_record
from lorasae.sae import load_sae
from lorasae.sae.batchtopk import BatchTopKSAE
from lorasae.sae.jumprelu import JumpReLUSAE
from lorasae.sae.matryoshka import MatryoshkaSAE
from lorasae.train.config import TrainSaeConfig

REPO = Path(__file__).resolve().parent.parent
SHORT = {"num_train_tokens": 640, "eval_every_pct": 50, "checkpoint_every_pct": 50}  # 10 steps
CLASSES = {"batchtopk": BatchTopKSAE, "matryoshka": MatryoshkaSAE, "jumprelu": JumpReLUSAE}
FOLDERS = {
    "batchtopk": "batchtopk_expansion_4_L0_4",
    "matryoshka": "matryoshka_expansion_4_L0_4",
    "jumprelu": "jumprelu_expansion_4_l0coef_0.001",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_world(tmp_path_factory.mktemp("world"))


def _train(world: tuple[Path, Path], root: Path, monkeypatch, *extra: str):
    from lorasae.train.sae_trainer import train_sae

    monkeypatch.setenv("LORASAE_ROOT", str(root))
    cfg = parse_with_config_file(TrainSaeConfig, [*fast_args(*world, **SHORT), *extra])
    return cfg, train_sae(cfg)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_architecture_trains_from_flags_saves_under_its_name_and_loads_in_sae_lens(
    name, world, tmp_path, monkeypatch
):
    extra = {"matryoshka": ["--matryoshka_widths", "16", "64"], "jumprelu": ["--l0_warmup_steps", "4"]}
    _, result = _train(world, tmp_path, monkeypatch, "--architecture", name, *extra.get(name, []))
    final = Path(result.final_dir)
    assert result.steps == 10 and final.parent.name == FOLDERS[name] and final.parts[-3] == "normal"
    assert (final.parent.parent / f"{FOLDERS[name]}-50pct").is_dir()  # checkpoints share the name
    assert read_record(final).get("architecture") == name  # the run record names it
    ours = load_sae(final)
    assert type(ours) is CLASSES[name]
    x = torch.randn(64, 32)
    with torch.no_grad():
        z = ours.encode(x)
        theirs = require("sae_lens").SAE.load_from_disk(final)
        torch.testing.assert_close(theirs.encode(x), z)
        torch.testing.assert_close(theirs(x), ours.reconstruct(x), rtol=1e-5, atol=1e-5)
    if name == "batchtopk":  # the inference threshold was estimated during training
        assert float(ours.threshold) > 0
    if name == "matryoshka":
        assert ours.cfg.widths == [16, 64, 128]
    if name == "jumprelu":  # λ rose from 0 over the 4 warm-up steps, then stayed at --l0_coefficient
        assert result.train_metrics["l1_coef"] == pytest.approx(1e-3)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_the_example_config_file_of_each_architecture_trains(name, world, tmp_path, monkeypatch):
    config = REPO / "configs" / f"train-{name}-tiny.yaml"
    cfg, result = _train(world, tmp_path, monkeypatch, "--config_file", str(config))
    assert cfg.architecture == name and result.steps == 10
    assert json.loads((Path(result.final_dir) / "cfg.json").read_text())["architecture"] == "jumprelu"
    assert type(load_sae(result.final_dir)) is CLASSES[name]


def test_runs_trained_before_the_new_options_keep_their_settings_and_those_that_use_them_name_them():
    from lorasae.train.options import SaeKwargs
    from lorasae.train.state import LATER_SAE_KWARGS, LATER_SETTINGS, resume_settings

    plain = resume_settings(TrainSaeConfig(model_type="tiny"))
    assert not set(plain) & set(LATER_SETTINGS) and not set(plain["sae_kwargs"]) & set(LATER_SAE_KWARGS)
    assert {k: getattr(SaeKwargs(), k) for k in LATER_SAE_KWARGS} == LATER_SAE_KWARGS  # the defaults agree
    jump = resume_settings(TrainSaeConfig(model_type="tiny", sae_kwargs=SaeKwargs(l0_coefficient=0.01)))
    assert jump["sae_kwargs"]["l0_coefficient"] == 0.01
    assert resume_settings(TrainSaeConfig(model_type="tiny", objective="kl"))["objective"] == "kl"
