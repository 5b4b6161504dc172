"""Crosscoders through train_sae.py (`--architecture crosscoder --layers 0 1`): a 2-layer crosscoder with
its cross terms zeroed is two separate SAEs; a run's per-source metrics and spliced CE against an
independent splice; train_lora.py with the crosscoder spliced at both layers of the built-in world."""

from __future__ import annotations

import pytest
import torch
from sae_train_helpers import fast_args, write_tiny_world

from lorasae.core.cli import parse
from lorasae.core.config_files import parse_with_config_file
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.run import main as train_lora_main
from lorasae.model.ce import mean_ce
from lorasae.model.hooks import residual_at, splice
from lorasae.model.load import load_model
from lorasae.sae import load_sae
from lorasae.sae.crosscoder import Crosscoder, CrosscoderConfig
from lorasae.sae.relu import ReluSAE, ReluSaeConfig
from lorasae.train.config import TrainSaeConfig
from lorasae.train.objectives import _sae_losses
from lorasae.train.sae_trainer import train_sae

pytestmark = pytest.mark.usefixtures("one_thread", "fast_names")  # fast runs keep plain names


def test_crosscoder_with_zeroed_cross_terms_is_two_separate_saes():
    torch.manual_seed(0)
    d, m = 6, 10
    saes = [ReluSAE(ReluSaeConfig(d_in=d, d_sae=m)) for _ in range(2)]
    for sae in saes:
        with torch.no_grad():
            for p in sae.parameters():
                p.add_(0.3 * torch.randn_like(p))
    coder = Crosscoder(CrosscoderConfig(d_in=[d, d], d_sae=2 * m, activation="relu"))
    with torch.no_grad():
        for s, sae in enumerate(saes):
            own = slice(s * m, (s + 1) * m)
            coder.W_enc[s].zero_()
            coder.W_dec[s].zero_()
            coder.W_enc[s][:, own] = sae.W_enc  # source s only reaches its own block of latents
            coder.W_dec[s][own] = sae.W_dec
            coder.b_dec[s].copy_(sae.b_dec)
            coder.b_enc[own] = sae.b_enc
    xs = [torch.randn(40, d) * 2, torch.randn(40, d) + 1]
    lam = 0.05
    with torch.no_grad():
        out = coder(xs, sparsity_coef=lam)
        separate = [sae(x) for sae, x in zip(saes, xs)]
    for x_hat, sep in zip(out.x_hat, separate):
        torch.testing.assert_close(x_hat, sep.x_hat)
    torch.testing.assert_close(out.z, torch.cat([sep.top_acts for sep in separate], dim=1))
    torch.testing.assert_close(out.fvu, torch.stack([sep.fvu for sep in separate]))
    separate_loss = sum(_sae_losses(x, sep, 0.0, lam)[0] for x, sep in zip(xs, separate))
    assert out.loss.item() == pytest.approx(float(separate_loss.detach()), rel=1e-5)


def test_crosscoder_run_per_source_metrics_and_spliced_ce(tmp_path, out_root):
    model_dir, data = write_tiny_world(tmp_path)
    args = fast_args(model_dir, data, architecture="crosscoder", lr=3e-3) + ["--layers", "0", "2"]
    result = train_sae(parse_with_config_file(TrainSaeConfig, args))
    assert result.final_dir.parent.name == "crosscoder_layers_0+2_expansion_4_L0_4__lr-0.003"  # lr named
    assert (result.final_dir / "config.json").exists()
    assert set(result.per_source) == {0, 2} and {"fvu_L0", "fvu_L2"} <= set(result.train_metrics)
    coder = load_sae(result.final_dir)
    assert isinstance(coder, Crosscoder) and coder.cfg.hook_layers == [0, 2]
    # independent check: reconstructions from the unspliced pass, spliced by hand
    model, tokenizer = load_model(str(model_dir), "cpu")
    from lorasae.model.data import load_token_split

    val = load_token_split(str(data), tokenizer, 32, 128).val
    with torch.no_grad():
        xs = [residual_at(model, val, layer).reshape(-1, 32) for layer in (0, 2)]
        x_hat = coder.reconstruct(xs)
        for layer, rec in zip((0, 2), x_hat):
            with splice(model, {layer: lambda h, rec=rec: rec.reshape(h.shape)}):
                logits = model(input_ids=val).logits
            ce = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), val[:, 1:].reshape(-1)
            )
            assert result.per_source[layer]["spliced_ce_this_layer_only"] == pytest.approx(
                float(ce), rel=1e-4
            )
            fvu = ((rec - xs[(0, 2).index(layer)]) ** 2).sum() / (
                (xs[(0, 2).index(layer)] - xs[(0, 2).index(layer)].mean(0)) ** 2
            ).sum()
            assert result.per_source[layer]["val_fvu"] == pytest.approx(float(fvu), rel=1e-4)
    assert result.val_l0 == 4.0
    assert mean_ce(model, val, 4) == pytest.approx(result.base_ce, rel=1e-5)


def test_lora_with_a_crosscoder_spliced_at_both_layers(world_model, out_root, capsys):
    args = ["--device", "cpu", "--model", str(world_model), "--dataset", "builtin", "--architecture", "crosscoder",
            "--layers", "0", "1", "--k", "2", "--expansion_factor", "4", "--lr", "3e-3",
            "--num_train_tokens", "65536", "--num_val_tokens", "4096", "--ctx_len", "64", "--batch_size", "16",
            "--eval_every_pct", "50", "--val_batch_size", "32"]  # fmt: skip
    sae_run = train_sae(parse_with_config_file(TrainSaeConfig, args))
    lora_cfg = parse(
        TrainLoraConfig,
        ["--device", "cpu", "--model", str(world_model), "--dataset", "builtin", "--sae", str(sae_run.final_dir),
         "--LoRA_layers", "all", "--rank", "16", "--num_train_examples", "300", "--num_val_tokens", "4096",
         "--progress", "false"],
    )  # fmt: skip
    (summary,) = train_lora_main(lora_cfg)
    with capsys.disabled():
        print(f"\ncrosscoder (mean FVU {sae_run.val_fvu:.3f}): {summary.line()}")
    assert summary.sae_layers == [0, 1]
    assert summary.run.sae_tag == sae_run.final_dir.parent.name  # the folder, its settings named
    assert summary.run.sae_tag.startswith("crosscoder_layers_0+1_expansion_4_L0_2__")
    assert summary.result.ce_gap > 0.01
    # measured 7.8 % here: the last source's reconstruction is what the LM head sees, and the adapters
    # act on it only through the latents read from the unspliced pass (lorasae/sae/crosscoder_splice.py)
    assert summary.result.frac_gap_closed > 0.02
