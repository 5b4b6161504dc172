"""TopK SAE training step: lorasae's TopKSAE (sparse kernels) vs EleutherAI sparsify's SparseCoder.

Target (SPEC §6): at d=512, m=8192, k=32, 4096 tokens, fp32 on CPU, >= 1.5x sparsify's throughput
(goal 2x). The floor is the dense encoder GEMM, which every TopK SAE must compute: the last column is
the fraction of the step taken by that GEMM alone (1.0 = nothing but the GEMM).

    python bench/sae_step.py
    python bench/sae_step.py --device 0 --tokens 16384
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, machine  # noqa: E402

from lorasae.cli import parse  # noqa: E402
from lorasae.runtime import parse_device  # noqa: E402
from lorasae.sae import SaeConfig, TopKSAE  # noqa: E402


@dataclass
class SaeStepBench:
    device: str | None = "cpu"
    """cpu, GPU index or cuda:N."""
    d_in: int = 512
    """Activation width."""
    d_sae: int = 8192
    """Number of latents."""
    k: int = 32
    """Active latents per token."""
    tokens: int = 4096
    """Tokens per step."""
    repeats: int = 7
    """Timed repetitions (median reported)."""
    dense_reference: bool = True
    """Also time our dense reference path (fast=False)."""


def step_fn(sae: torch.nn.Module, x: torch.Tensor):
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = sae(x)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        sae.set_decoder_norm_to_unit_norm()

    return step


def main(cfg: SaeStepBench) -> None:
    device = parse_device(cfg.device)
    torch.manual_seed(0)
    x = torch.randn(cfg.tokens, cfg.d_in, device=device)
    ours = TopKSAE(SaeConfig(cfg.d_in, cfg.d_sae, cfg.k), device=device)
    fns = {"lorasae TopKSAE": step_fn(ours, x)}
    if cfg.dense_reference:
        dense = TopKSAE(SaeConfig(cfg.d_in, cfg.d_sae, cfg.k), device=device, fast=False)
        fns["lorasae dense reference"] = step_fn(dense, x)
    try:
        from sparsify import SparseCoder, SparseCoderConfig

        theirs = SparseCoder(cfg.d_in, SparseCoderConfig(num_latents=cfg.d_sae, k=cfg.k), device=device)
        fns["sparsify SparseCoder"] = step_fn(theirs, x)
    except ImportError:
        print("sparsify is not installed (pip install eai-sparsify): comparing against our dense path only")
    w, b = ours.encoder.weight.detach(), ours.encoder.bias.detach()
    fns["encoder GEMM alone"] = lambda: F.linear(x, w, b)

    times = alternate(fns, device, repeats=cfg.repeats)
    gemm = times.pop("encoder GEMM alone")
    base = times.get("sparsify SparseCoder", times.get("lorasae dense reference"))
    rows = [
        [name, cfg.tokens / t, t * 1e3, base / t if base else float("nan"), gemm / t]
        for name, t in times.items()
    ]
    print(
        f"machine: {machine()}; d={cfg.d_in}, m={cfg.d_sae}, k={cfg.k}, {cfg.tokens} tokens, fp32; "
        f"encoder GEMM alone {gemm * 1e3:.1f} ms"
    )
    headers = ["implementation", "tokens/s", "ms/step", "x sparsify", "GEMM fraction"]
    print(tabulate(rows, headers=headers, floatfmt=".3g"))


if __name__ == "__main__":
    main(parse(SaeStepBench))
