"""SAEs trained on the error components (Engels et al. Fig. 8): one TopK SAE on the linear error
x·W* + b, one on the nonlinear error e − x·W* − b, each scored by its FVU on held-out tokens. The paper
finds the linear part more learnable (its SAE latents are features like the model's); a nonlinear error
that is dense noise leaves an SAE of the same size with a much higher FVU.

The targets are tensors of an SAEInfo, not the model's residual stream, so this trains with the
project's pieces (`TopKSAE`, `train.optim.make_optimizer`, `train.schedule.make_scheduler`, the same
step as `SaeTrainer`: decoder-parallel gradient removed, clipping, unit-norm decoder) in one function
rather than through `train_sae.py`, whose trainer reads activations from the model (giving it a
modified-hidden-state target would mean changing lorasae/train/).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lorasae.losses import fvu
from lorasae.sae import SaeConfig, TopKSAE, geometric_median
from lorasae.train.config import default_lr
from lorasae.train.optim import make_optimizer
from lorasae.train.schedule import make_scheduler


@dataclass
class ErrorSaeResult:
    target: str
    width: int
    k: int
    train_fvu: float
    """FVU on the last tenth of training steps' batches."""
    test_fvu: float


def train_sae_on(
    train: Tensor,
    test: Tensor,
    width: int,
    k: int,
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[TopKSAE, float, float]:
    """(sae, train FVU over the last tenth of steps, test FVU) of a TopK SAE trained on the rows of
    `train` [N, d] with Adam, warm-up then linear decay, b_dec initialised at the geometric median."""
    torch.manual_seed(seed)
    d = train.shape[1]
    sae = TopKSAE(SaeConfig(d_in=d, d_sae=width, k=k), device=device)
    with torch.no_grad():
        sae.b_dec.copy_(geometric_median(train[:4096].to(device).float()))
    optimizer, _ = make_optimizer(sae.parameters(), lr or default_lr(width), torch.device(device))
    scheduler = make_scheduler(optimizer, max(1, steps // 20), steps)
    g = torch.Generator().manual_seed(seed)
    tail: list[float] = []
    for step in tqdm(range(steps), desc=f"error SAE {width}", disable=not progress, leave=False):
        rows = torch.randint(0, len(train), (batch_size,), generator=g)
        out = sae(train[rows].to(device).float())
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        sae.set_decoder_norm_to_unit_norm()
        if step >= steps - max(1, steps // 10):
            tail.append(float(out.fvu.detach()))
    with torch.no_grad():
        test_x = test.to(device).float()
        test_fvu = float(fvu(test_x, sae.reconstruct(test_x)))
    return sae.eval(), sum(tail) / len(tail), test_fvu


def train_error_saes(
    components: dict[str, tuple[Tensor, Tensor]], widths: list[int], k: int, steps: int = 2000, **kwargs
) -> list[ErrorSaeResult]:
    """One SAE per (component, width): `components` maps a name ("linear", "nonlinear") to its
    (train, test) rows."""
    results = []
    for name, (train, test) in components.items():
        for width in widths:
            _, train_fvu, test_fvu = train_sae_on(train, test, width, k, steps, **kwargs)
            results.append(ErrorSaeResult(name, width, k, train_fvu, test_fvu))
    return results
