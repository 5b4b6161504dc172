"""The ReLU + L1 SAE (`--architecture relu`): its loss against the formula written out, the L1 warm-up's
values, SAELens's standard-SAE format (sae_lens loads it with equal outputs), the dead-latent count, a
train_sae.py run, and LoRA on a ReLU SAE through train_lora.py on the built-in world."""

from __future__ import annotations

import pytest
import torch
from sae_train_helpers import fast_args, write_tiny_world

from lorasae.core.cli import parse
from lorasae.core.config_files import parse_with_config_file
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.run import main as train_lora_main
from lorasae.sae import load_sae
from lorasae.sae.registry import architecture_of, load_ours
from lorasae.sae.relu import ReluSAE, ReluSaeConfig
from lorasae.train.architecture import step_sparsity
from lorasae.train.config import TrainSaeConfig
from lorasae.train.objectives import _sae_losses
from lorasae.train.sae_trainer import train_sae
from lorasae.train.schedule import sparsity_coef

pytestmark = pytest.mark.usefixtures("one_thread", "fast_names")  # fast runs keep plain names


def _relu_sae(d_in: int = 8, d_sae: int = 24, seed: int = 0) -> ReluSAE:
    torch.manual_seed(seed)
    sae = ReluSAE(ReluSaeConfig(d_in=d_in, d_sae=d_sae, hook_layer=1))
    with torch.no_grad():  # away from the init so that every term matters
        for p in sae.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return sae


def test_relu_loss_is_fvu_plus_decoder_norm_weighted_l1():
    sae = _relu_sae()
    x = torch.randn(50, 8) * 3 + 1
    lam = 0.07
    out = sae(x)
    loss, _ = _sae_losses(x, out, auxk_alpha=0.0, sparsity_coef=lam)
    # written out with loops over latents, independently of the module
    W_enc, b_enc, W_dec, b_dec = (t.detach() for t in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
    z = torch.clamp((x - b_dec) @ W_enc + b_enc, min=0)
    x_hat = sum(z[:, i : i + 1] * W_dec[i] for i in range(24)) + b_dec
    fvu = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    l1 = sum(z[:, i] * W_dec[i].norm() for i in range(24)).mean()
    assert out.fvu.item() == pytest.approx(fvu.item(), rel=1e-5)
    assert out.l1.item() == pytest.approx(l1.item(), rel=1e-5)
    assert loss.item() == pytest.approx((fvu + lam * l1).item(), rel=1e-5)
    # the weighting makes rescaling a latent (z·c, W_dec/c) leave the penalty unchanged
    with torch.no_grad():
        sae.W_enc[:, 0] *= 4
        sae.b_enc[0] *= 4
        sae.W_dec[0] /= 4
    assert sae(x).l1.item() == pytest.approx(out.l1.item(), rel=1e-5)


def test_sparsity_warmup_rises_linearly_then_stays():
    assert [sparsity_coef(s, 2.0, 4) for s in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert [sparsity_coef(s, 2.0, 0) for s in range(3)] == [2.0, 2.0, 2.0]
    relu = parse_with_config_file(
        TrainSaeConfig, ["--sae_type", "relu", "--sparsity", "0.4", "--sparsity_warmup_steps", "10"]
    )
    assert [step_sparsity(relu, s) for s in (0, 4, 9, 50)] == pytest.approx([0.04, 0.2, 0.4, 0.4])
    topk = parse_with_config_file(TrainSaeConfig, ["--sparsity", "0.4"])
    assert step_sparsity(topk, 3) == 0.0  # TopK has no L1 term


def test_sae_lens_loads_our_relu_folder_with_equal_outputs(tmp_path):
    from required_libs import require

    sae_lens = require("sae_lens")
    sae = _relu_sae()
    sae.save(tmp_path / "relu", step=3)
    theirs = sae_lens.SAE.load_from_disk(tmp_path / "relu")
    assert isinstance(theirs, sae_lens.StandardSAE)
    x = torch.randn(20, 8)
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), sae.encode(x))
        torch.testing.assert_close(theirs.decode(sae.encode(x)), sae.reconstruct(x))
    assert architecture_of(tmp_path / "relu") == "relu"
    for back in (ReluSAE.load(tmp_path / "relu"), load_ours(tmp_path / "relu"), load_sae(tmp_path / "relu")):
        assert isinstance(back, ReluSAE) and back.hook_layer == 1
        torch.testing.assert_close(back.reconstruct(x), sae.reconstruct(x))


def test_relu_run_counts_dead_latents_and_saves_its_tag(tmp_path, out_root):
    model_dir, data = write_tiny_world(tmp_path)
    args = fast_args(model_dir, data, architecture="relu", sparsity=0.05, sparsity_warmup_steps=20, lr=3e-3)
    result = train_sae(parse_with_config_file(TrainSaeConfig, args + ["--dead_after_tokens", "640"]))
    assert result.final_dir.parent.name == "expansion_4_relu_l1_0.05__lr-0.003_l1warmup-20"
    from lorasae.core.paths import sae_curve_path

    # its curve sits beside the TopK one, never in its place
    curve = result.curve_files["val_loss"]
    assert curve.name == f"normal_{result.final_dir.parent.name}__layer_1_SAE.json" and curve.exists()
    assert not sae_curve_path("val_loss", "model", "normal").exists()
    assert result.train_metrics["l1_coef"] == 0.05 and result.train_metrics["l1"] > 0
    sae = ReluSAE.load(result.final_dir)
    # L0 and the never-active share recomputed from the validation activations
    from lorasae.model.data import load_token_split
    from lorasae.model.hooks import residual_at
    from lorasae.model.load import load_model

    model, tokenizer = load_model(str(model_dir), "cpu")
    val = load_token_split(str(data), tokenizer, 32, 128).val
    with torch.no_grad():
        z = sae.encode(residual_at(model, val, 1).reshape(-1, 32))
    assert result.val_l0 == pytest.approx(float((z > 0).sum(-1).float().mean()), rel=1e-4)
    assert result.val_dead_fraction == pytest.approx(float(((z > 0).sum(0) == 0).float().mean()))
    assert 0.0 <= result.train_dead_fraction <= 1.0


def test_lora_on_a_relu_sae_closes_part_of_the_gap(world_model, out_root, capsys):
    args = ["--device", "cpu", "--model", str(world_model), "--dataset", "builtin", "--layer", "0",
            "--architecture", "relu", "--sparsity", "0.01", "--sparsity_warmup_steps", "50", "--lr", "3e-3",
            "--expansion_factor", "4", "--num_train_tokens", "65536", "--num_val_tokens", "4096",
            "--ctx_len", "64", "--batch_size", "16", "--eval_every_pct", "50", "--val_batch_size", "32"]  # fmt: skip
    sae_run = train_sae(parse_with_config_file(TrainSaeConfig, args))
    lora_cfg = parse(
        TrainLoraConfig,
        ["--device", "cpu", "--model", str(world_model), "--dataset", "builtin", "--sae", str(sae_run.final_dir),
         "--sae_layer", "0", "--LoRA_layers", "after", "--rank", "16", "--num_train_examples", "300",
         "--num_val_tokens", "4096", "--progress", "false"],
    )  # fmt: skip
    (summary,) = train_lora_main(lora_cfg)
    with capsys.disabled():
        print(f"\nReLU SAE (FVU {sae_run.val_fvu:.3f}, L0 {sae_run.val_l0:.1f}): {summary.line()}")
    # layer 0 is not the default 1; the folder names the settings off the defaults
    assert summary.run.sae_tag == f"layer_0__{sae_run.final_dir.parent.name}"
    assert summary.run.sae_tag.startswith("layer_0__expansion_4_relu_l1_0.01__")
    assert summary.result.ce_gap > 0.01
    assert summary.result.frac_gap_closed > 0.05


def test_sum_sq_loss_is_squared_error_summed_over_d_mean_over_tokens_plus_l1():
    """--recon_loss sum_sq: Σ_d (x̂ − x)² averaged over tokens + λ·L1 (written out with loops)."""
    sae = _relu_sae()
    x = torch.randn(40, 8) * 2 - 1
    lam = 5.0
    loss, stats = _sae_losses(x, sae(x), auxk_alpha=0.0, sparsity_coef=lam, recon_loss="sum_sq")
    with torch.no_grad():
        z = sae.encode(x)
        x_hat = sae.decode(z)
        per_token = [sum((x_hat[t, j] - x[t, j]) ** 2 for j in range(8)) for t in range(40)]
        l1 = [sum(z[t, i] * sae.W_dec[i].norm() for i in range(24)) for t in range(40)]
        expected = sum(per_token) / 40 + lam * sum(l1) / 40
    assert loss.item() == pytest.approx(float(expected), rel=1e-5)
    assert stats.loss.item() == pytest.approx(float(expected), rel=1e-5)


def test_sum_sq_loss_equals_sae_lens_standard_training_loss_on_the_same_weights():
    sae_lens = pytest.importorskip("sae_lens")
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig

    sae = _relu_sae()
    lam = 0.7
    theirs = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=8, d_sae=24, l1_coefficient=lam))
    theirs.load_state_dict(
        {n: getattr(sae, n).detach().clone() for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    )
    x = torch.randn(30, 8) * 3
    step = TrainStepInput(x, {"l1": lam}, None, n_training_steps=0, is_logging_step=False)
    out = theirs.training_forward_pass(step)
    ours, _ = _sae_losses(x, sae(x), auxk_alpha=0.0, sparsity_coef=lam, recon_loss="sum_sq")
    assert ours.item() == pytest.approx(out.loss.item(), rel=1e-5)
    fvu_loss, _ = _sae_losses(x, sae(x), auxk_alpha=0.0, sparsity_coef=lam)
    assert fvu_loss.item() != pytest.approx(out.loss.item(), rel=1e-2)  # the default is another scale
    assert sae_lens.__version__  # the comparison ran against the installed sae_lens


def _seed_vanilla_losses(x, enc_w, enc_b, dec_w, dec_b, sparsity):
    """train-SAE's VanillaSAE.get_losses (train_sae/saes/vanilla.py) on one all-ones mask, step past warm-up:
    nn.Linear layers (encoder [s, d], decoder [d, s]), no b_dec subtracted before the encoder."""
    encoded = torch.relu(x @ enc_w.t() + enc_b)
    decoded = encoded @ dec_w.t() + dec_b
    mask = torch.ones(x.shape[0], 1)
    mse = ((decoded - x).pow(2) * mask).sum() / mask.sum()
    sparsity_loss = (encoded * mask @ torch.norm(dec_w, dim=0)).sum() / mask.sum() * 1.0 * sparsity
    return mse + sparsity_loss


def test_sum_sq_loss_equals_the_seeds_vanilla_sae_loss_on_the_same_weights():
    sae = _relu_sae()
    x = torch.randn(25, 8) + 0.5
    with torch.no_grad():  # our b_dec is subtracted before encoding: fold it into the seed's encoder bias
        seed = _seed_vanilla_losses(
            x, sae.W_enc.t(), sae.b_enc - sae.b_dec @ sae.W_enc, sae.W_dec.t(), sae.b_dec, sparsity=5.0
        )
    ours, _ = _sae_losses(x, sae(x), auxk_alpha=0.0, sparsity_coef=5.0, recon_loss="sum_sq")
    assert ours.item() == pytest.approx(seed.item(), rel=1e-5)


def test_recon_loss_flag_parses_and_is_refused_where_it_means_nothing():
    cfg = parse_with_config_file(TrainSaeConfig, ["--architecture", "relu", "--recon_loss", "sum_sq"])
    assert cfg.sae_kwargs.recon_loss == "sum_sq"
    assert parse_with_config_file(TrainSaeConfig, ["--architecture", "relu"]).sae_kwargs.recon_loss == "fvu"
    cfg.validate(32)
    with pytest.raises(ValueError, match="--recon_loss must be one of fvu, sum_sq"):
        parse_with_config_file(TrainSaeConfig, ["--architecture", "relu", "--recon_loss", "mse"]).validate(32)
    for other in (["--architecture", "topk"], ["--architecture", "relu", "--e2e"]):  # FVU / KL objectives
        with pytest.raises(ValueError, match="--recon_loss sum_sq is for --architecture relu"):
            parse_with_config_file(TrainSaeConfig, [*other, "--recon_loss", "sum_sq"]).validate(32)


def test_seed_loss_run_trains_on_the_squared_error_per_token_not_the_fvu(tmp_path, out_root):
    """train_sae.py --recon_loss sum_sq: the logged loss − λ·L1 is the squared error per token, i.e. the
    FVU times the residual's per-token variance Σ_d Var(x_d) (about 0.013 on this random model), not the FVU."""
    model_dir, data = write_tiny_world(tmp_path)
    lam = 1e-4
    args = fast_args(model_dir, data, architecture="relu", sparsity=lam, recon_loss="sum_sq", lr=3e-3)
    result = train_sae(parse_with_config_file(TrainSaeConfig, args))
    m = result.train_metrics
    from lorasae.model.data import load_token_split
    from lorasae.model.hooks import residual_at
    from lorasae.model.load import load_model

    model, tokenizer = load_model(str(model_dir), "cpu")
    with torch.no_grad():
        x = residual_at(model, load_token_split(str(data), tokenizer, 32, 128).val, 1).reshape(-1, 32)
    per_token_variance = float(x.var(0, unbiased=False).sum())
    assert (m["loss"] - lam * m["l1"]) / m["fvu"] == pytest.approx(per_token_variance, rel=0.5)
    assert per_token_variance < 0.1  # so an FVU-scale loss would be far off
    assert result.val_l0 > 0
