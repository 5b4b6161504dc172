"""The composed trainer's seams: each option group checks its own fields and `TrainSaeConfig` is exactly
their union; the architecture registry builds, saves and reloads every dictionary from a spec; a new
architecture plugs in through one registry entry (its per-step hook runs once per step); the crosscoder
over layers at one position trains (an IndexError on main); e2e ReLU SAEs train (an AssertionError on main)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from sae_train_helpers import fast_config, write_tiny_world

from lorasae.core.cli import CommonArgs
from lorasae.sae import TopKSAE
from lorasae.sae.registry import ARCHITECTURES, ON_DISK, SAE_CLASSES, Architecture, DictionarySpec, load_ours
from lorasae.train.config import TrainSaeConfig
from lorasae.train.options import (
    OPTION_GROUPS,
    ArchitectureOptions,
    CurveOptions,
    ModificationOptions,
    OptimizerOptions,
    PersistenceOptions,
    SaeKwargs,
    SourceOptions,
    TokenOptions,
)

pytestmark = pytest.mark.usefixtures("fast_names")  # fast runs keep plain names

SHORT = {"num_train_tokens": 640, "eval_every_pct": 50, "checkpoint_every_pct": 50}  # 10 steps


def test_each_option_group_reports_its_own_bad_values_and_none_by_default():
    for group in OPTION_GROUPS:
        args = {ArchitectureOptions: (32,), TokenOptions: (128,), SourceOptions: (32,)}.get(group, ())
        assert group().problems(*args) == [], group
    assert TokenOptions(ctx_len=256).problems(128) == [
        "--ctx_len 256 exceeds the model's context window of 128"
    ]
    assert ArchitectureOptions(k=200, expansion_factor=2).problems(32) == [
        "--k must be between 1 and the SAE width 64, got 200"
    ]
    assert ArchitectureOptions(architecture="lstm").problems(32) == [
        "--architecture must be one of topk, relu, crosscoder, batchtopk, matryoshka, jumprelu, transcoder, "
        "skip_transcoder, got 'lstm'"
    ]
    assert SaeKwargs(
        matryoshka_widths=[64, 16], jumprelu_sparsity_loss="l0", threshold_lr=2.0
    ).problems() == [
        "--threshold_lr must be ≤ 1, got 2.0",
        "--matryoshka_widths must increase strictly from 1 or more, got [64, 16]",
        "--jumprelu_sparsity_loss must be step or tanh, got 'l0'",
    ]
    assert ArchitectureOptions(expansion_factor=2, sae_kwargs=SaeKwargs(matryoshka_widths=[8, 100])).problems(
        32
    ) == ["--matryoshka_widths must not exceed the SAE width 64, got [8, 100]"]
    assert SaeKwargs(recon_loss="l2").problems() == ["--recon_loss must be one of fvu, sum_sq, got 'l2'"]
    assert OptimizerOptions(lr=0.0).problems() == ["--lr must be > 0, got 0.0"]
    assert CurveOptions(eval_every_pct=0).problems() == ["--eval_every_pct must be in (0, 100], got 0"]
    assert PersistenceOptions(checkpoint_every_pct=7).problems() == [
        "--checkpoint_every_pct must divide 100, got 7"
    ]
    assert SourceOptions(models=["a"]).problems(32) == ["--models needs two models or more, got ['a']"]
    assert ModificationOptions(hidden_modification="sae_error").problems() == [
        "--hidden_modification sae_error needs --modification_file"
    ]


def test_config_is_exactly_the_union_of_the_groups_and_hands_out_each_group():
    names = [f.name for f in dataclasses.fields(TrainSaeConfig)]
    parts = [f.name for g in (CommonArgs, *OPTION_GROUPS) for f in dataclasses.fields(g)]
    assert sorted(names) == sorted(parts) and len(set(names)) == len(names)
    cfg = TrainSaeConfig(lr=3e-4, lr_scheduler="cosine", compile=True)
    assert cfg.group(OptimizerOptions) == OptimizerOptions(lr=3e-4, lr_scheduler="cosine", compile=True)


def test_a_rule_between_two_groups_is_reported_once():
    problems = TrainSaeConfig(architecture="crosscoder", e2e=True, positions="-1").problems(32, 128)
    assert problems == [
        "--e2e is for single-layer SAEs (topk or relu), not crosscoders",
        "--positions is for the reconstruction objective, not --e2e",
    ]
    with pytest.raises(ValueError, match="--recon_loss sum_sq is for --architecture relu"):
        TrainSaeConfig(sae_kwargs=SaeKwargs(recon_loss="sum_sq")).validate(32, 128)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_registry_entry_builds_saves_and_reloads_its_dictionary(name, tmp_path):
    entry = ARCHITECTURES[name]
    spec = DictionarySpec(
        d_in=8, d_sae=24, k=3, model_name="m", hook_layer=1, hook_layers=[0, 1],
        source_names=["layer0", "layer1"], model_names=["m", "m"],
    )  # fmt: skip
    torch.manual_seed(0)
    sae = entry.build(spec, "cpu")
    assert type(sae) is entry.sae_class and isinstance(sae.cfg, entry.config_class)
    assert SAE_CLASSES[name] is entry.sae_class and ON_DISK[name] == entry.on_disk  # the loading tables agree
    assert sae.cfg.d_sae == 24
    folder = sae.save(tmp_path / name)
    assert json.loads((folder / "cfg.json").read_text())["architecture"] == entry.on_disk
    back = load_ours(folder)
    assert type(back) is entry.sae_class
    for key, value in sae.state_dict().items():
        torch.testing.assert_close(back.state_dict()[key], value, rtol=0, atol=0)


class _CountingTopK(TopKSAE):
    """A TopK SAE whose architecture keeps per-step state (as BatchTopK's threshold estimate would)."""


def test_a_new_architecture_plugs_in_through_one_registry_entry(tmp_path, monkeypatch):
    calls: list[float] = []

    def after_update(sae: torch.nn.Module, out) -> None:
        assert out.x_hat.shape[-1] == 32  # the step's own output
        sae.set_decoder_norm_to_unit_norm()
        calls.append(float(sae.W_dec.detach().norm(dim=1).mean()))

    topk = ARCHITECTURES["topk"]
    new = Architecture("counting", _CountingTopK, topk.config_class, "topk", True, topk.make_config,
                       after_update=after_update)  # fmt: skip
    monkeypatch.setitem(ARCHITECTURES, "counting", new)
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    from lorasae.train.sae_trainer import train_sae

    model_dir, data = write_tiny_world(tmp_path)
    result = train_sae(fast_config(model_dir, data, architecture="counting", **SHORT))
    assert result.steps == 10 and len(calls) == 10
    assert calls == pytest.approx([1.0] * 10)  # the hook ran after each update, on the trained SAE
    assert isinstance(load_ours(result.final_dir), TopKSAE)


@pytest.mark.usefixtures("one_thread")
def test_crosscoder_over_layers_at_one_position_trains_and_scores_each_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    from lorasae.train.sae_trainer import train_sae

    model_dir, data = write_tiny_world(tmp_path)
    cfg = fast_config(model_dir, data, architecture="crosscoder", positions="-1", **SHORT)
    cfg.layers = [1, 2]
    result = train_sae(cfg)
    assert sorted(result.per_source) == [1, 2]
    for metrics in result.per_source.values():
        assert torch.isfinite(torch.tensor(metrics["spliced_ce_this_layer_only"]))
    assert result.val_loss[-1] == pytest.approx(
        sum(m["spliced_ce_this_layer_only"] for m in result.per_source.values()) / 2, rel=1e-6
    )


@pytest.mark.usefixtures("one_thread")
def test_e2e_relu_sae_trains_with_its_l1_term(tmp_path, monkeypatch):
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    from lorasae.train.sae_trainer import train_sae

    model_dir, data = write_tiny_world(tmp_path)
    result = train_sae(fast_config(model_dir, data, architecture="relu", e2e=True, sparsity=0.01, **SHORT))
    assert result.steps == 10 and Path(result.final_dir).parts[-3] == "e2e"
    assert result.train_metrics["l1_coef"] == 0.01 and result.train_metrics["l1"] > 0


def test_reconstruction_objective_on_a_row_pair_is_the_fvu_of_the_target():
    """Rows (x, target), a transcoder's (MLP input, MLP output): loss = ‖ŷ − target‖² / Σ‖target − mean‖²
    (numpy, ŷ from the transcoder's own decoder); a plain tensor keeps a TopK SAE's FVU of x."""
    import contextlib

    import numpy as np

    from lorasae.sae import SaeConfig
    from lorasae.sae.transcoder import Transcoder, TranscoderConfig
    from lorasae.train.objectives import ReconstructionObjective

    torch.manual_seed(0)
    tc = Transcoder(TranscoderConfig(d_in=6, d_sae=18, d_out=5))
    x, target = torch.randn(50, 6), torch.randn(50, 5) * 3 + 1
    objective = ReconstructionObjective(0.0, "fvu", lambda step: 0.0, False, contextlib.nullcontext)
    pair = objective(tc, (x, target), 0, None, 1)
    with torch.no_grad():
        z = torch.relu(x @ tc.W_enc + tc.b_enc)
        y_hat = (z @ tc.W_dec + tc.b_dec).double().numpy()
    t = target.double().numpy()
    expected = ((y_hat - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()
    assert float(pair.loss) == pytest.approx(expected, rel=1e-5)
    assert pair.metrics["fvu"] == pytest.approx(expected, rel=1e-5)
    sae = TopKSAE(SaeConfig(d_in=6, d_sae=18, k=3))
    plain = objective(sae, x, 0, None, 1)
    x_hat, xd = sae(x).x_hat.detach().double().numpy(), x.double().numpy()
    assert float(plain.loss) == pytest.approx(
        ((x_hat - xd) ** 2).sum() / ((xd - xd.mean(0)) ** 2).sum(), rel=1e-5
    )
    assert np.isfinite(plain.metrics["l0"])
