"""One full TopK SAE training step: ours vs EleutherAI sparsify's SparseCoder vs a dense reference.

A step is forward, FVU loss, backward, removal of the decoder-gradient component parallel to each decoder
row, an Adam step, zero_grad and the decoder-row renormalisation, identically for every variant: the
same shapes, dtype, thread count, data and initial weights, and the same optimiser (our trainer's
``make_optimizer(kind="adam")``, i.e. ``torch.optim.Adam``, built the same way for each). sparsify runs as
it ships: ``SparseCoder.forward`` (its ``FusedEncoder`` autograd function; without Triton its decoder is
the eager ``embedding_bag``), its own ``remove_gradient_parallel_to_decoder_directions`` and
``set_decoder_norm_to_unit_norm``. The dense encoder GEMM alone (``x @ W_enc.T + b_enc`` written into a
preallocated output: the floor of any exact TopK step) is timed in the same interleaved runs.

SPEC §6 target: >= 1.5x sparsify's throughput (aim 2x) at d=512, m=8192, k=32, 4096 tokens, fp32, CPU.

    python bench/sae_step.py                                  # the SPEC shape, fp32, CPU
    python bench/sae_step.py --clock cpu --threads 1          # CPU time: steadier on a busy machine
    python bench/sae_step.py --device 0 --dtype bfloat16      # GPU (sparsify autocasts to bf16 there)

Needs the benchmark-only dependencies: ``pip install -r requirements-bench.txt --no-deps``.
The last line reads ``sae_step: <ratio>x sparsify (<ours> tok/s vs <theirs> tok/s, <pct>% of encoder-GEMM
limit)``.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, machine, sync  # noqa: E402

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.runtime import parse_device, parse_dtype  # noqa: E402
from lorasae.sae import SaeConfig, TopKSAE  # noqa: E402
from lorasae.train.optim import make_optimizer  # noqa: E402


@dataclass
class SaeStepBench:
    device: str = "cpu"
    """cpu, a GPU index or cuda:N."""
    dtype: str = "float32"
    """Parameter dtype: float32 or bfloat16."""
    d_in: int = 512
    """Input width d."""
    d_sae: int = 8192
    """Number of latents m."""
    k: int = 32
    """Active latents per token."""
    tokens: int = 4096
    """Tokens per step."""
    repeats: int = 7
    """Timed steps per variant (median reported; variants interleaved)."""
    warmup: int = 2
    """Untimed steps per variant first."""
    threads: int | None = None
    """torch CPU threads for every variant (default: torch's default)."""
    clock: str = "wall"
    """wall (throughput) or cpu (process CPU time, summed over threads; steadier on a shared machine)."""
    autocast: bool = True
    """On CUDA, run our forward under bf16 autocast as sparsify's SparseCoder.forward does by itself."""
    skip_dense: bool = False
    """Leave out the dense reference (it is the slowest)."""
    breakdown: bool = False
    """Also print per-phase times (forward, backward, optimiser) of ours and sparsify."""
    seed: int = 0
    """Seed for data and weights."""


class Variant:
    """A model plus its optimiser; ``step()`` is one full training step."""

    def __init__(self, name: str, sae: torch.nn.Module, lr: float, device: torch.device, ctx) -> None:
        self.name, self.sae, self.ctx = name, sae, ctx
        self.opt, _ = make_optimizer(sae.parameters(), lr, device, kind="adam")

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        with self.ctx():
            return self.sae(x).fvu

    def post_backward(self) -> None:
        self.sae.remove_gradient_parallel_to_decoder_directions()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sae.set_decoder_norm_to_unit_norm()

    def step(self, x: torch.Tensor) -> None:
        self.loss(x).backward()
        self.post_backward()


def build(cfg: SaeStepBench, device: torch.device, dtype: torch.dtype) -> tuple[dict[str, Variant], object]:
    try:
        with contextlib.redirect_stdout(sys.stderr):  # sparsify prints which decoder it uses on import
            from sparsify import SparseCoder, SparseCoderConfig
    except ImportError as err:
        raise SystemExit(
            f"{err}: install the benchmark-only dependencies: pip install --no-deps -r requirements-bench.txt"
        ) from err

    torch.manual_seed(cfg.seed)
    sae_cfg = SaeConfig(d_in=cfg.d_in, d_sae=cfg.d_sae, k=cfg.k)
    ours = TopKSAE(sae_cfg, device=device, dtype=dtype)
    theirs = SparseCoder(
        cfg.d_in, SparseCoderConfig(num_latents=cfg.d_sae, k=cfg.k), device=device, dtype=dtype
    )
    theirs.load_state_dict(
        {"encoder.weight": ours.encoder.weight, "encoder.bias": ours.encoder.bias,
         "W_dec": ours.W_dec, "b_dec": ours.b_dec}
    )  # fmt: skip
    lr = 2e-4 / (cfg.d_sae / 2**14) ** 0.5
    use_autocast = cfg.autocast and device.type == "cuda" and torch.cuda.is_bf16_supported()

    def ours_ctx():
        return torch.autocast("cuda", torch.bfloat16) if use_autocast else contextlib.nullcontext()

    variants = {
        "lorasae TopKSAE": Variant("lorasae TopKSAE", ours, lr, device, ours_ctx),
        "sparsify SparseCoder": Variant("sparsify SparseCoder", theirs, lr, device, contextlib.nullcontext),
    }
    if not cfg.skip_dense:
        dense = TopKSAE(sae_cfg, device=device, dtype=dtype, fast=False)
        dense.load_state_dict(ours.state_dict())
        variants["dense reference"] = Variant("dense reference", dense, lr, device, ours_ctx)
    return variants, ours_ctx


def check_parity(variants: dict[str, Variant], x: torch.Tensor) -> None:
    """Same weights, same batch: the losses and parameter gradients must agree before anything is timed."""
    grads = {}
    for name, v in variants.items():
        v.sae.zero_grad(set_to_none=True)
        loss = v.loss(x)
        loss.backward()
        v.sae.remove_gradient_parallel_to_decoder_directions()
        grads[name] = (float(loss.detach()), {n: p.grad.float() for n, p in v.sae.named_parameters()})
        v.sae.zero_grad(set_to_none=True)
    ref_loss, ref = grads["lorasae TopKSAE"]
    exact = x.dtype in (torch.float32, torch.float64) and x.device.type == "cpu"
    # half precision (or bf16 autocast on CUDA): ~10% gradient error vs fp64 for every variant alike
    loss_tol, grad_tol = (1e-3, 1e-3) if exact else (2e-2, 0.5)
    for name, (loss, g) in grads.items():
        if abs(loss - ref_loss) > loss_tol * abs(ref_loss):
            raise RuntimeError(f"{name}: loss {loss} differs from ours {ref_loss}")
        for pname, grad in g.items():
            err = float((grad - ref[pname]).norm() / ref[pname].norm().clamp_min(1e-30))
            if err > grad_tol:
                raise RuntimeError(
                    f"{name}: gradient of {pname} differs from ours (relative error {err:.2e})"
                )


def breakdown(variants: dict[str, Variant], x: torch.Tensor, cfg: SaeStepBench, clock, device) -> list:
    rows = []
    for name in ("lorasae TopKSAE", "sparsify SparseCoder"):
        v = variants[name]
        phases: dict[str, list[float]] = {"forward": [], "backward": [], "optimiser etc.": []}
        for i in range(cfg.warmup + cfg.repeats):
            t0 = clock()
            loss = v.loss(x)
            sync(device)
            t1 = clock()
            loss.backward()
            sync(device)
            t2 = clock()
            v.post_backward()
            sync(device)
            t3 = clock()
            if i >= cfg.warmup:
                for key, t in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
                    phases[key].append(t)
        rows.append([name] + [1e3 * statistics.median(t) for t in phases.values()])
    return rows


def main(cfg: SaeStepBench) -> None:
    device = parse_device(cfg.device)
    dtype = parse_dtype(cfg.dtype)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.clock not in ("wall", "cpu"):
        raise ValueError("--clock is wall or cpu")
    clock: Callable[[], float] = time.perf_counter if cfg.clock == "wall" else time.process_time
    variants, ours_ctx = build(cfg, device, dtype)
    torch.manual_seed(cfg.seed + 1)
    x = torch.randn(cfg.tokens, cfg.d_in, device=device, dtype=dtype)
    check_parity(variants, x)

    ours = variants["lorasae TopKSAE"].sae
    W_enc, b_enc = ours.encoder.weight.detach().clone(), ours.encoder.bias.detach().clone()
    with torch.no_grad(), ours_ctx():
        out = F.linear(x, W_enc, b_enc)  # the output buffer, allocated once (its dtype follows autocast)

    @torch.no_grad()
    def gemm() -> None:
        torch.addmm(b_enc.to(out.dtype), x.to(out.dtype), W_enc.t().to(out.dtype), out=out)

    fns: dict[str, Callable[[], object]] = {n: (lambda v=v: v.step(x)) for n, v in variants.items()}
    fns["encoder GEMM alone"] = gemm
    secs = alternate(fns, device, repeats=cfg.repeats, warmup=cfg.warmup, clock=clock)

    theirs_s, gemm_s = secs["sparsify SparseCoder"], secs["encoder GEMM alone"]
    rows = [
        [name, 1e3 * s, cfg.tokens / s, theirs_s / s, gemm_s / s if name != "encoder GEMM alone" else None]
        for name, s in secs.items()
    ]
    print(
        f"machine: {machine()}, device {device}, dtype {cfg.dtype}, d={cfg.d_in} m={cfg.d_sae} k={cfg.k}, "
        f"{cfg.tokens} tokens, {cfg.clock} clock, median of {cfg.repeats} interleaved steps"
    )
    print(
        tabulate(rows, headers=["variant", "ms/step", "tok/s", "x sparsify", "of GEMM limit"], floatfmt=".3g")
    )
    if cfg.breakdown:
        print(tabulate(breakdown(variants, x, cfg, clock, device), headers=["ms", "forward", "backward",
                                                                            "optimiser etc."], floatfmt=".1f"))  # fmt: skip
    ours_s = secs["lorasae TopKSAE"]
    print(
        f"sae_step: {theirs_s / ours_s:.2f}x sparsify ({cfg.tokens / ours_s:.0f} tok/s vs "
        f"{cfg.tokens / theirs_s:.0f} tok/s, {100 * gemm_s / ours_s:.0f}% of encoder-GEMM limit)"
    )


if __name__ == "__main__":
    main(parse(SaeStepBench))
