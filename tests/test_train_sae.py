"""train_sae.py: settings, schedule, losses, CE evaluation, the training loop's outputs, bad input."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model
from sae_train_helpers import fast_config, write_tiny_world

from lorasae.core import paths
from lorasae.core.cli import parse
from lorasae.core.losses import fvu, kl_next_token, total_variance
from lorasae.kl import chunked_kl
from lorasae.model.ce import mean_ce
from lorasae.model.load import LayerOutOfRangeError
from lorasae.train.config import TrainSaeConfig, default_k
from lorasae.train.optim import make_optimizer, resolve_optimizer_kind
from lorasae.train.schedule import WarmupLinearDecay
from lorasae.train.state import ResumeError, load_state, state_path

pytestmark = pytest.mark.usefixtures("fast_names")  # fast runs keep plain names


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_world(tmp_path_factory.mktemp("tiny_world"))


# --- settings ---------------------------------------------------------------------------------------


def test_paper_defaults_and_small_model_scaling():
    cfg = parse(TrainSaeConfig, ["--model_type", "gemma"])
    assert (cfg.layer, cfg.num_train_tokens, cfg.expansion_factor) == (None, None, 8)  # resolved per model
    assert (cfg.eval_every_pct, cfg.auxk_alpha, cfg.e2e, cfg.max_grad_norm) == (1.0, 0.0, False, 1.0)
    gemma = cfg.resolved(d_model=2304, max_positions=8192, n_layers=26)
    assert gemma.layer == 12  # the paper's layer
    assert gemma.num_train_tokens == 2_000_000_000  # the paper's Gemma budget
    assert gemma.batch_size == 1 and gemma.val_batch_size == 4
    assert (gemma.k, gemma.ctx_len, gemma.num_val_tokens) == (64, 1024, 1_000_000)
    assert gemma.lr == pytest.approx(2e-4 / math.sqrt(18432 / 2**14))
    assert gemma.warmup_steps == 1000 and gemma.total_steps == 1_953_125
    tiny = parse(TrainSaeConfig, ["--model_type", "tiny", "--num_train_tokens", "300_000"]).resolved(
        128, 128, 4
    )
    assert tiny.layer == 1  # the small-model layer: `train_sae.py --model_type tiny` needs no --layer
    assert (tiny.k, tiny.ctx_len, tiny.num_val_tokens, tiny.dataset) == (4, 128, 8_192, "builtin")
    assert tiny.batch_size == 8 and tiny.total_steps == 293  # the paper's 1024 tokens per step
    assert tiny.val_batch_size == 8
    assert tiny.warmup_steps == tiny.total_steps // 10  # a 1000-step warm-up would outlast the run
    assert default_k(2048) == 64 and default_k(512) == 14


def test_curve_and_checkpoint_steps():
    cfg = parse(TrainSaeConfig, ["--num_train_tokens", "300_000", "--ctx_len", "1024"]).resolved(128)
    assert cfg.total_steps == 293
    steps = cfg.eval_steps()
    assert len(steps) == 101 and steps[0] == 0 and steps[-1] == 293 and steps == sorted(steps)
    assert cfg.checkpoint_steps() == {p: round(p * 293 / 100) for p in range(10, 101, 10)}


def test_invalid_settings_are_reported():
    with pytest.raises(ValueError, match="--k must be between 1 and the SAE width 64"):
        parse(TrainSaeConfig, ["--k", "100", "--expansion_factor", "2"]).resolved(32)
    with pytest.raises(ValueError, match="checkpoint_every_pct must divide 100"):
        parse(TrainSaeConfig, ["--checkpoint_every_pct", "30"]).resolved(32)


def test_schedule_warmup_then_linear_decay():
    f = WarmupLinearDecay(warmup_steps=10, total_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(109) == pytest.approx(0.01) and f(110) == 0.0


def test_optimizer_selection_on_cpu():
    assert resolve_optimizer_kind("auto", torch.device("cpu")) == "adam"
    with pytest.warns(UserWarning, match="8-bit Adam needs CUDA"):
        assert resolve_optimizer_kind("adam8bit", torch.device("cpu")) == "adam"
    optimizer, kind = make_optimizer([torch.nn.Parameter(torch.zeros(2))], 1e-3, torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.Adam) and kind == "adam"


# --- losses and CE ----------------------------------------------------------------------------------


def test_fvu_and_kl():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    assert fvu(x, x) == 0
    assert fvu(x, x.mean((0, 1)).expand_as(x)) == pytest.approx(1.0)
    assert total_variance(x) == pytest.approx(((x - x.mean((0, 1))) ** 2).sum().item())
    p, q = torch.randn(3, 4, 11), torch.randn(3, 4, 11)
    manual = (p.softmax(-1) * (p.log_softmax(-1) - q.log_softmax(-1))).sum() / 3
    assert kl_next_token(p, q) == pytest.approx(manual.item(), rel=1e-5)
    assert kl_next_token(p, p) == pytest.approx(0.0, abs=1e-6)


def test_kl_agrees_with_lora_chunked_kl():
    p, q = torch.randn(2, 6, 13), torch.randn(2, 6, 13)
    assert chunked_kl(q, p, chunk_size=4).item() == pytest.approx(kl_next_token(p, q).item(), rel=1e-5)


def test_mean_ce_matches_manual_and_restores_mode():
    model = make_tiny_model("llama")
    ids = torch.randint(3, 96, (5, 12))
    with torch.no_grad():
        logits = model(ids).logits
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 96), ids[:, 1:].reshape(-1))
    assert mean_ce(model, ids, batch_size=2) == pytest.approx(manual.item(), rel=1e-5)
    model.train()
    identity = mean_ce(model, ids, batch_size=3, splice_fns=lambda batch: {1: lambda h: h})
    assert identity == pytest.approx(manual.item(), rel=1e-5) and model.training
    zeroed = mean_ce(model, ids, batch_size=5, splice_fns={1: torch.zeros_like})
    assert abs(zeroed - manual.item()) > 1e-3


def test_e2e_step_trains_only_the_sae():
    from lorasae.sae import SaeConfig, TopKSAE
    from lorasae.train.objectives import e2e_step

    model = make_tiny_model("llama")
    for param in model.parameters():
        param.requires_grad_(False)
    sae = TopKSAE(SaeConfig(d_in=32, d_sae=64, k=4))
    ids = torch.randint(3, 96, (2, 10))
    loss, out, stats = e2e_step(model, sae, ids, 1, 0.0, None)
    with torch.no_grad():
        p = model(ids).logits
        from lorasae.model.hooks import splice

        with splice(model, {1: lambda h: sae(h.reshape(-1, 32)).x_hat.reshape(h.shape)}):
            q = model(ids).logits
    assert loss.item() == pytest.approx(kl_next_token(p, q).item(), rel=1e-5)
    loss.backward()
    assert all(param.grad is not None for param in sae.parameters())
    assert all(param.grad is None for param in model.parameters())
    assert stats.tokens == 20 and out.top_idx.shape == (20, 4)


# --- the training loop ------------------------------------------------------------------------------


def test_short_run_writes_labelled_checkpoints_and_curves(world, out_root):
    from lorasae.sae import TopKSAE
    from lorasae.train.sae_trainer import train_sae

    cfg = fast_config(*world, eval_every_pct=1)
    result = train_sae(cfg)
    total = 60  # ceil(3840 / (2 × 32))
    assert result.steps == total and result.tokens == 3840
    # curve: point i at progress i/100, first before training, cumulative training minutes
    # not the model's default SAE (k 4, expansion 4): its curve file is named after it
    assert result.curve_files["val_loss"].name == "normal_expansion_4_L0_4__layer_1_SAE.json"
    ce = json.loads(result.curve_files["val_loss"].read_text())
    minutes = json.loads(result.curve_files["time"].read_text())
    assert len(ce) == len(minutes) == 101 and minutes[0] == 0.0 and minutes == sorted(minutes)
    assert ce == result.val_loss and all(math.isfinite(v) for v in ce)
    # checkpoints at the true percentages, plus the final SAE
    for pct in range(10, 101, 10):
        folder = paths.sae_dir("model", "normal", 4, 4, 1, pct)
        meta = json.loads((folder / "cfg.json").read_text())
        text = json.dumps(meta)
        assert f'"checkpoint_pct": {pct}' in text and f'"step": {round(pct * total / 100)}' in text
    final = TopKSAE.load(paths.sae_dir("model", "normal", 4, 4, 1))
    assert final.cfg.d_in == 32 and final.cfg.d_sae == 128 and final.cfg.k == 4 and final.cfg.hook_layer == 1
    torch.testing.assert_close(final.W_dec.norm(dim=1), torch.ones(128), atol=1e-5, rtol=0)
    # L0 == k exactly: every validation token has exactly k active latents
    assert result.val_l0 == 4.0
    assert result.val_fvu < 0.5  # random-model activations: most of the variance already explained
    assert load_state(state_path(cfg.resolved(32, 128))).step == total


def test_layer_out_of_range(world, out_root):
    from lorasae.train.sae_trainer import train_sae

    with pytest.raises(LayerOutOfRangeError, match="3 decoder layers"):
        train_sae(fast_config(*world, layer=3))


def test_init_sae_of_another_width_is_rejected(world, out_root, tmp_path):
    from lorasae.sae import SaeConfig, SaeShapeError, TopKSAE
    from lorasae.train.sae_trainer import train_sae

    TopKSAE(SaeConfig(d_in=48, d_sae=192, k=4)).save(tmp_path / "other_model_sae")
    with pytest.raises(
        SaeShapeError, match="reads 48-dimensional activations, but this model's d_model is 32"
    ):
        train_sae(fast_config(*world, init_sae=tmp_path / "other_model_sae"))
    TopKSAE(SaeConfig(d_in=32, d_sae=64, k=4)).save(tmp_path / "narrow_sae")
    with pytest.raises(SaeShapeError, match="pass --expansion_factor 2"):
        train_sae(fast_config(*world, init_sae=tmp_path / "narrow_sae"))


def test_resume_rejects_other_settings_and_other_model(world, out_root, tmp_path):
    from lorasae.train.sae_trainer import train_sae

    train_sae(fast_config(*world, lr=1e-3, num_train_tokens=640))
    with pytest.raises(ResumeError, match="--num_train_tokens: saved 640, now 1280"):
        train_sae(fast_config(*world, lr=1e-3, num_train_tokens=1280, resume=True))
    # a wider model saved under the same name (same output paths): the SAE no longer fits
    wider = tmp_path / "wider" / "model"
    model = make_tiny_model("llama", d=48)
    model.save_pretrained(wider)
    from conftest import make_char_tokenizer

    make_char_tokenizer().save_pretrained(wider)
    with pytest.raises(ResumeError, match="width 32→128, but this model's d_model is 48"):
        train_sae(
            fast_config(wider, world[1], lr=1e-3, num_train_tokens=640, k=4, expansion_factor=4, resume=True)
        )


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(world, out_root, monkeypatch):
    from lorasae.train import harvest
    from lorasae.train.sae_trainer import NonFiniteLossError, train_sae

    real = harvest.residual_at  # the training steps' activations (one batch per forward on the CPU)
    calls = {"n": 0}

    def poisoned(model, ids, layer):
        calls["n"] += 1
        hidden = real(model, ids, layer)
        return hidden * float("nan") if calls["n"] == 33 else hidden  # step 33 of 60

    monkeypatch.setattr(harvest, "residual_at", poisoned)
    cfg = fast_config(*world)
    with pytest.raises(
        NonFiniteLossError, match=r"Stopped at step 33: the loss became nan.*state at step 30"
    ):
        train_sae(cfg)
    for pct in (10, 20, 30, 40, 50):
        assert (paths.sae_dir("model", "normal", 4, 4, 1, pct) / "cfg.json").exists()
    assert not paths.sae_dir("model", "normal", 4, 4, 1, 60).exists()
    state = load_state(state_path(cfg.resolved(32, 128)))
    assert state.step == 30 and all(torch.isfinite(v).all() for v in state.sae.values())


def test_failed_state_write_leaves_no_partial_file(world, out_root, monkeypatch):
    from lorasae.train import state as state_module
    from lorasae.train.sae_trainer import train_sae

    cfg = fast_config(*world, num_train_tokens=640)
    train_sae(cfg)
    path = state_path(cfg.resolved(32, 128))
    before = path.read_bytes()

    def half_written(obj, file):
        Path(file).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(state_module.torch, "save", half_written)
    with pytest.raises(OSError, match="disk full"):  # an identical rerun is skipped: --overwrite redoes it
        train_sae(fast_config(*world, num_train_tokens=640, overwrite=True))
    assert path.read_bytes() == before
    leftovers = [name for name in os.listdir(path.parent) if name.endswith(".tmp")]
    assert leftovers == []


def test_e2e_run_writes_e2e_outputs(world, out_root):
    from lorasae.train.sae_trainer import train_sae

    result = train_sae(fast_config(*world, e2e=True, num_train_tokens=640))
    tag = result.final_dir.parent.name  # its budget named: not the fast runs' default (issue 25)
    assert tag == "expansion_4_L0_4__n-640" and result.final_dir.parts[-3] == "e2e"
    assert (result.final_dir / "cfg.json").exists()
    assert result.curve_files["val_loss"].name == f"e2e_{tag}__layer_1_SAE.json"
    assert json.loads(result.curve_files["val_loss"].read_text()) == result.val_loss
    assert not list(result.curve_files["val_loss"].parent.glob("normal_*"))


def test_auxk_loss_is_added_when_asked(world, out_root):
    from lorasae.train.sae_trainer import train_sae

    common = {"dead_after_tokens": 256, "num_train_tokens": 1280}
    plain = train_sae(fast_config(*world, **common))
    # same folder, other settings: replacing the first SAE needs --overwrite (issue 20)
    auxk = train_sae(fast_config(*world, auxk_alpha=1.0, overwrite=True, **common))
    assert plain.train_metrics["loss"] == pytest.approx(plain.train_metrics["fvu"], rel=1e-4)
    assert plain.train_dead_fraction > 0  # dead latents exist after 256 tokens, so AuxK has work to do
    assert auxk.train_metrics["loss"] > auxk.train_metrics["fvu"] * 1.01


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(TrainSaeConfig, ["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--num_train_tokens" in text and "--e2e" in text and "--auxk_alpha" in text and "--resume" in text
