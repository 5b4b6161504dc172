"""Issue 28's dictionaries against SAELens 6.54 and sparsify: `sae_lens` loads each folder we save with
equal encode / decode / forward outputs; `load_sae` reads the folders SAELens saves of the same kinds
(and a sparsify skip transcoder) into our classes with equal outputs; and the pieces of training
(batch selection, threshold update, straight-through gradients, L0 warm-up) equal SAELens's own."""

from __future__ import annotations

import pytest
import torch
from required_libs import require

from lorasae.sae import load_sae
from lorasae.sae.batchtopk import BatchTopKConfig, BatchTopKSAE, batch_topk_select
from lorasae.sae.jumprelu import JumpReLUConfig, JumpReLUFunction, JumpReLUSAE, StepFunction, l0_coefficient
from lorasae.sae.matryoshka import MatryoshkaConfig, MatryoshkaSAE
from lorasae.sae.transcoder import Transcoder, TranscoderConfig

sae_lens = require("sae_lens")
pytestmark = pytest.mark.usefixtures("one_thread")


def _perturb(module: torch.nn.Module, scale: float = 0.3) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def _ours(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "batchtopk":
        sae = BatchTopKSAE(BatchTopKConfig(d_in=8, d_sae=24, k=3, hook_layer=1))
        sae.threshold.fill_(0.35)
    elif kind == "matryoshka":
        sae = MatryoshkaSAE(MatryoshkaConfig(d_in=8, d_sae=24, k=3, widths=[4, 12], hook_layer=1))
        sae.threshold.fill_(0.35)
    elif kind == "jumprelu":
        sae = JumpReLUSAE(JumpReLUConfig(d_in=8, d_sae=24, init_threshold=0.2, hook_layer=1))
    else:
        cfg = TranscoderConfig(d_in=8, d_sae=24, d_out=6, skip=kind == "skip_transcoder", hook_layer=1)
        sae = Transcoder(cfg)
    _perturb(sae)
    return sae.eval()


KINDS = ["batchtopk", "matryoshka", "jumprelu", "transcoder", "skip_transcoder"]
THEIR_CLASS = {
    "batchtopk": "JumpReLUSAE",
    "matryoshka": "JumpReLUSAE",
    "jumprelu": "JumpReLUSAE",
    "transcoder": "Transcoder",
    "skip_transcoder": "SkipTranscoder",
}


@pytest.mark.parametrize("kind", KINDS)
def test_sae_lens_loads_our_folder_with_equal_outputs(tmp_path, kind):
    ours = _ours(kind)
    ours.save(tmp_path / kind, step=5)
    theirs = sae_lens.SAE.load_from_disk(tmp_path / kind)
    assert type(theirs).__name__ == THEIR_CLASS[kind]
    x = torch.randn(40, 8) * 1.5
    with torch.no_grad():
        z = ours.encode(x)
        assert (z > 0).any() and (z == 0).any()
        torch.testing.assert_close(theirs.encode(x), z)
        torch.testing.assert_close(theirs.decode(z), ours.decode(z), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(theirs(x), ours.reconstruct(x), rtol=1e-5, atol=1e-5)


def _theirs(kind: str) -> torch.nn.Module:
    """A SAELens SAE of `kind` with random weights (a trained BatchTopK / Matryoshka is saved for
    inference: `save_inference_model`)."""
    torch.manual_seed(1)
    s = sae_lens
    if kind == "batchtopk":
        from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=8, d_sae=24, k=3))
        sae.topk_threshold.fill_(0.3)
    elif kind == "matryoshka":
        from sae_lens.saes.matryoshka_batchtopk_sae import (
            MatryoshkaBatchTopKTrainingSAE,
            MatryoshkaBatchTopKTrainingSAEConfig,
        )

        cfg = MatryoshkaBatchTopKTrainingSAEConfig(d_in=8, d_sae=24, k=3, matryoshka_widths=[6, 24])
        sae = MatryoshkaBatchTopKTrainingSAE(cfg)
        sae.topk_threshold.fill_(0.3)
    elif kind == "jumprelu":
        sae = s.JumpReLUSAE(s.JumpReLUSAEConfig(d_in=8, d_sae=24))
    elif kind == "transcoder":
        sae = s.Transcoder(s.TranscoderConfig(d_in=8, d_sae=24, d_out=6, apply_b_dec_to_input=False))
    else:
        sae = s.SkipTranscoder(s.SkipTranscoderConfig(d_in=8, d_sae=24, d_out=6, apply_b_dec_to_input=False))
    _perturb(sae)
    if kind == "jumprelu":
        with torch.no_grad():
            sae.threshold.copy_(torch.rand(24) * 0.5)
    return sae


@pytest.mark.parametrize("kind", KINDS)
def test_load_sae_reads_sae_lens_folders_into_our_classes(tmp_path, kind):
    theirs = _theirs(kind)
    folder = tmp_path / kind
    if kind in ("batchtopk", "matryoshka"):
        theirs.save_inference_model(folder)
    else:
        theirs.save_model(folder)
    reference = sae_lens.SAE.load_from_disk(folder)  # the inference SAE SAELens makes of the folder
    ours = load_sae(folder)
    expected = {"batchtopk": BatchTopKSAE, "matryoshka": MatryoshkaSAE, "jumprelu": JumpReLUSAE}
    assert type(ours) is expected.get(kind, Transcoder)
    if kind == "matryoshka":
        assert ours.cfg.widths == [6, 24]
    x = torch.randn(30, 8) * 1.5
    with torch.no_grad():
        z = reference.encode(x)
        assert (z > 0).any() and (z == 0).any()
        torch.testing.assert_close(ours.encode(x), z)
        torch.testing.assert_close(ours.reconstruct(x), reference(x), rtol=1e-5, atol=1e-5)


def test_load_sae_adds_the_skip_term_of_a_sae_lens_jumprelu_skip_transcoder(tmp_path):
    s = sae_lens
    cfg = s.JumpReLUSkipTranscoderConfig(d_in=8, d_sae=24, d_out=6, apply_b_dec_to_input=False)
    theirs = s.JumpReLUSkipTranscoder(cfg)
    _perturb(theirs)
    theirs.save_model(tmp_path / "jst")
    ours = load_sae(tmp_path / "jst")  # Gemma Scope's transcoder kind: read through sae_lens
    x = torch.randn(10, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours.reconstruct(x), theirs.eval()(x), rtol=1e-5, atol=1e-5)
    assert ours.splice_site == "mlp"


def test_load_sae_reads_a_sparsify_skip_transcoder(tmp_path):
    sparsify = require("sparsify")
    torch.manual_seed(2)
    cfg = sparsify.SparseCoderConfig(num_latents=24, k=3, transcode=True, skip_connection=True)
    theirs = sparsify.SparseCoder(8, cfg)
    _perturb(theirs)
    theirs.save_to_disk(tmp_path / "layers.2")
    ours = load_sae(tmp_path / "layers.2")
    assert type(ours) is Transcoder and ours.cfg.activation == "topk" and ours.cfg.skip
    assert ours.cfg.k == 3 and ours.cfg.hook_layer == 2
    x, y = torch.randn(12, 8), torch.randn(12, 8)
    with torch.no_grad():
        ref = theirs(x, y)
        torch.testing.assert_close(ours.reconstruct(x), ref.sae_out, rtol=1e-5, atol=1e-5)
        assert ours(x, target=y).fvu.item() == pytest.approx(ref.fvu.item(), rel=1e-5)


def test_batch_topk_selection_and_threshold_update_equal_sae_lens():
    from sae_lens.saes.batchtopk_sae import BatchTopK, BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

    torch.manual_seed(3)
    pre = torch.randn(10, 24) * torch.linspace(0.3, 2.0, 10)[:, None]
    acts, idx = batch_topk_select(pre, 4)
    torch.testing.assert_close(torch.zeros_like(pre).scatter(1, idx, acts), BatchTopK(4)(pre))
    ours = BatchTopKSAE(BatchTopKConfig(d_in=8, d_sae=24, k=4, threshold_lr=0.05))
    theirs = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=8, d_sae=24, k=4, topk_threshold_lr=0.05))
    for step in range(3):
        batch = torch.randn(10, 24) * (step + 1)
        a, i = batch_topk_select(batch, 4)
        ours.update_threshold(a)
        theirs.update_topk_threshold(BatchTopK(4)(batch))
        assert float(ours.threshold) == pytest.approx(float(theirs.topk_threshold), rel=1e-12)


def test_jumprelu_gradients_and_l0_warmup_equal_sae_lens():
    from sae_lens.saes.jumprelu_sae import JumpReLU, Step
    from sae_lens.training.optim import CoefficientScheduler

    torch.manual_seed(4)
    theta = torch.rand(6, dtype=torch.float64) * 0.5 + 0.1
    z = theta + 0.2 * torch.randn(9, 6, dtype=torch.float64)
    g = torch.randn(9, 6, dtype=torch.float64)
    for ours_fn, their_fn in [(JumpReLUFunction, JumpReLU), (StepFunction, Step)]:
        grads = []
        for args in ((ours_fn, 0.3), (their_fn, 0.3, False)):  # SAELens's 4th argument: no STE to z
            zz, tt = z.clone().requires_grad_(), theta.clone().requires_grad_()
            out = args[0].apply(zz, tt, *args[1:])
            (out * g).sum().backward()
            grads.append((out.detach(), tt.grad, zz.grad if zz.grad is not None else torch.zeros_like(z)))
        for mine, theirs in zip(*grads, strict=True):
            torch.testing.assert_close(mine, theirs)
    scheduler = CoefficientScheduler(warm_up_steps=5, final_value=2.5)
    for step in range(8):
        assert l0_coefficient(step, 2.5, 5) == pytest.approx(scheduler.value)
        scheduler.step()


def test_arch_step_bench_times_every_architecture_against_its_reference(capsys):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "arch_step.py"
    spec = importlib.util.spec_from_file_location("arch_step_bench", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    args = ["--d_in", "16", "--d_sae", "64", "--k", "4", "--tokens", "64", "--repeats", "1", "--warmup", "0"]
    module.main(args)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("arch_step: ")
    assert [part.split()[0] for part in last[len("arch_step: ") :].split(", ")] == [
        "batchtopk",
        "matryoshka",
        "jumprelu",
        "transcoder",
    ]
