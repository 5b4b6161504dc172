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

from lorasae.core.config_files import parse_with_config_file
from lorasae.core.records import read_record
from lorasae.sae import load_sae
from lorasae.sae.batchtopk import BatchTopKSAE
from lorasae.sae.jumprelu import JumpReLUSAE
from lorasae.sae.matryoshka import MatryoshkaSAE
from lorasae.sae.transcoder import Transcoder
from lorasae.train.config import TrainSaeConfig

pytestmark = pytest.mark.usefixtures("fast_names")  # fast runs keep plain names

REPO = Path(__file__).resolve().parent.parent
SHORT = {"num_train_tokens": 640, "eval_every_pct": 50, "checkpoint_every_pct": 50}  # 10 steps
CLASSES = {
    "batchtopk": BatchTopKSAE,
    "matryoshka": MatryoshkaSAE,
    "jumprelu": JumpReLUSAE,
    "transcoder": Transcoder,
    "skip_transcoder": Transcoder,
}
FOLDERS = {
    "batchtopk": "batchtopk_expansion_4_L0_4",
    "matryoshka": "matryoshka_expansion_4_L0_4",
    "jumprelu": "jumprelu_expansion_4_l0coef_0.001",
    "transcoder": "transcoder_expansion_4_relu_l1_0.001",
    "skip_transcoder": "skip_transcoder_expansion_4_relu_l1_0.001",
}
ON_DISK = {"transcoder": "transcoder", "skip_transcoder": "skip_transcoder"}


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
    tag, _, variant = final.parent.name.partition("__")  # the short budget named after the tag
    assert (
        result.steps == 10
        and tag == FOLDERS[name]
        and variant.startswith("n-640")
        and final.parts[-3] == "normal"
    )
    assert (final.parent.parent / f"{final.parent.name}-50pct").is_dir()  # checkpoints share the name
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
    if name == "skip_transcoder":
        assert ours.W_skip.abs().sum() > 0  # W_skip (zero at the start) was trained
    if name == "jumprelu":  # λ rose from 0 over the 4 warm-up steps, then stayed at --l0_coefficient
        assert result.train_metrics["l1_coef"] == pytest.approx(1e-3)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_an_interrupted_run_resumed_ends_with_the_uninterrupted_runs_weights(
    name, world, tmp_path, monkeypatch
):
    from lorasae.train.logger import TrainLogger
    from lorasae.train.persistence import RunInterrupted

    flags = ["--architecture", name, "--save_every_steps", "5"]
    _, reference = _train(world, tmp_path / "whole", monkeypatch, *flags)
    original = TrainLogger.step

    def stop(self, step, metrics):
        original(self, step, metrics)
        if step == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainLogger, "step", stop)
    with pytest.raises(RunInterrupted):
        _train(world, tmp_path / "cut", monkeypatch, *flags)
    monkeypatch.setattr(TrainLogger, "step", original)
    _, resumed = _train(world, tmp_path / "cut", monkeypatch, *flags, "--resume")
    assert resumed.steps == reference.steps == 10
    a, b = load_sae(resumed.final_dir).state_dict(), load_sae(reference.final_dir).state_dict()
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert resumed.val_loss == reference.val_loss


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_the_example_config_file_of_each_architecture_trains(name, world, tmp_path, monkeypatch):
    config = REPO / "configs" / f"train-{name}-tiny.yaml"
    cfg, result = _train(world, tmp_path, monkeypatch, "--config_file", str(config))
    assert cfg.architecture == name and result.steps == 10
    on_disk = json.loads((Path(result.final_dir) / "cfg.json").read_text())["architecture"]
    assert on_disk == ON_DISK.get(name, "jumprelu")
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


class _Replaced(torch.nn.Module):
    """An MLP replaced by the transcoder's reconstruction of its input (the independent splice)."""

    def __init__(self, sae: torch.nn.Module):
        super().__init__()
        self.sae = sae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae.reconstruct(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def test_transcoder_curve_is_the_ce_with_the_mlp_output_replaced_and_its_fvu_that_of_the_mlp_output():
    from conftest import make_tiny_model

    from lorasae.sae.transcoder import TranscoderConfig
    from lorasae.train.distributed import DistInfo
    from lorasae.train.modification import plain_rows
    from lorasae.train.transcoder_parts import TranscoderCurve

    torch.manual_seed(0)
    model = make_tiny_model("llama", n_layers=3, d=16).eval()
    sae = Transcoder(TranscoderConfig(d_in=16, d_sae=48, activation="topk", k=4, skip=True)).eval()
    with torch.no_grad():
        sae.W_skip.normal_(0, 0.1)
    ids = torch.randint(0, 50, (6, 12))
    cfg = TrainSaeConfig(layer=1, val_batch_size=4)
    curve = TranscoderCurve(cfg, model, sae, ids, ids, [], DistInfo(), plain_rows, False)
    with torch.no_grad():
        got, base, stats = curve.value(), curve.base(), curve.final()
        plain = model(input_ids=ids).logits
        mlp_in, mlp_out = [], []

        def record(_module, args, output) -> None:
            mlp_in.append(args[0])
            mlp_out.append(output)

        handle = model.model.layers[1].mlp.register_forward_hook(record)
        model(input_ids=ids)
        handle.remove()
        original_mlp = model.model.layers[1].mlp
        model.model.layers[1].mlp = _Replaced(sae)
        spliced = model(input_ids=ids).logits
        model.model.layers[1].mlp = original_mlp

    def ce(logits: torch.Tensor) -> float:
        return float(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()))

    assert got == pytest.approx(ce(spliced), rel=1e-5) and base == pytest.approx(ce(plain), rel=1e-5)
    x, y = mlp_in[0].reshape(-1, 16).double(), mlp_out[0].reshape(-1, 16).double()
    y_hat = sae.reconstruct(x.float()).double()
    fvu = float((y_hat - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
    assert stats.val_fvu == pytest.approx(fvu, rel=1e-6) and stats.val_l0 == pytest.approx(4.0)


@pytest.mark.usefixtures("one_thread")
def test_a_topk_transcoder_trains_under_its_k_name_and_reloads(world, tmp_path, monkeypatch):
    flags = ["--architecture", "transcoder", "--transcoder_activation", "topk"]
    _, result = _train(world, tmp_path, monkeypatch, *flags)
    assert Path(result.final_dir).parent.name.split("__")[0] == "transcoder_expansion_4_L0_4"
    back = load_sae(result.final_dir)
    assert type(back) is Transcoder and back.cfg.activation == "topk" and back.cfg.k == 4
    assert result.val_l0 == pytest.approx(4.0)
