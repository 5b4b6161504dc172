"""`--lr_scheduler constant|cosine|linear_decay` with `--lr_warmup_steps` (the paper's warm-up + linear
decay stays the default), and `--compile`: the compiled SAE step gives the eager step's loss."""

from __future__ import annotations

import math

import pytest
import torch

from lorasae.core.config_files import parse_with_config_file
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.sae.relu import ReluSAE, ReluSaeConfig
from lorasae.train.config import TrainSaeConfig
from lorasae.train.objectives import _sae_losses
from lorasae.train.schedule import WarmupLinearDecay, make_scheduler


def test_default_schedule_is_the_papers_warmup_then_linear_decay():
    cfg = parse_with_config_file(TrainSaeConfig, [])
    assert (cfg.lr_scheduler, cfg.lr_warmup_steps) == ("linear_decay", 1000)
    f = WarmupLinearDecay(2, 6)
    assert [f(s) for s in range(7)] == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_cosine_and_constant_after_the_same_warmup():
    cosine, constant = WarmupLinearDecay(2, 6, "cosine"), WarmupLinearDecay(2, 6, "constant")
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(4)] + [0.0]
    assert [cosine(s) for s in range(7)] == pytest.approx(expected)
    assert [constant(s) for s in range(7)] == pytest.approx([0.5, 1.0, 1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="cosine"):
        WarmupLinearDecay(2, 6, "exponential")
    with pytest.raises(ValueError, match="--lr_scheduler"):
        parse_with_config_file(TrainSaeConfig, ["--lr_scheduler", "step"]).resolved(128, 128, 4)
    # what the optimiser sees: lr × factor, step by step
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = make_scheduler(opt, 2, 6, "cosine")
    seen = []
    for _ in range(6):
        seen.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1 * v for v in expected[:6]])


def _compile_or_skip(module: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    compiled = torch.compile(module)
    try:
        compiled(x)
    except Exception as err:  # no C++ compiler, unsupported platform, ...
        pytest.skip(f"torch.compile is unusable here: {type(err).__name__}: {str(err)[:200]}")
    return compiled


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_compiled_step_gives_the_eager_loss_and_gradients(arch):
    torch.manual_seed(0)
    if arch == "topk":
        sae = TopKSAE(SaeConfig(d_in=16, d_sae=64, k=4))
    else:
        sae = ReluSAE(ReluSaeConfig(d_in=16, d_sae=64))
    x = torch.randn(128, 16) * 2
    compiled = _compile_or_skip(sae, x)
    losses, grads = [], []
    for module in (sae, compiled):
        sae.zero_grad()
        loss, _ = _sae_losses(x, module(x), auxk_alpha=0.0, sparsity_coef=0.01)
        loss.backward()
        losses.append(loss.item())
        grads.append([p.grad.clone() for p in sae.parameters()])
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for eager, comp in zip(*grads):
        torch.testing.assert_close(comp, eager, rtol=1e-4, atol=1e-6)
