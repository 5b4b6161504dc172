"""One training step of each issue-28 dictionary: ours vs the reference trainer's step for the same
architecture and shape, in one run.

| ours | reference |
|---|---|
| `BatchTopKSAE` | SAELens `BatchTopKTrainingSAE.training_forward_pass` (+ its threshold update) |
| `MatryoshkaSAE` (widths m/8, m/4, m/2, m) | SAELens `MatryoshkaBatchTopKTrainingSAE` (same widths) |
| `JumpReLUSAE` (step L0 penalty) | SAELens `JumpReLUTrainingSAE` (step L0 penalty); both sides' thresholds set so each latent fires on k/m of the tokens (a trained SAE's L0 ≈ k) |
| `Transcoder` (TopK, skip) | sparsify `SparseCoder(transcode=True, skip_connection=True)` (SAELens trains no transcoder) |

A step is forward, loss, backward, Adam step and zero_grad for both sides, plus each side's own per-step
extras (our decoder-row constraint and threshold update; SAELens's threshold update inside its forward;
sparsify's decoder renormalisation). Data, thread count and optimiser settings are the same; the
initial weights are each library's own. SAELens and sparsify run as they ship (SAELens BatchTopK with its
default ``rescale_acts_by_decoder_norm``). Throughput = tokens / median step time, variants interleaved.

    python bench/arch_step.py                  # the SPEC step shape: d=512, m=8192, k=32, 4096 tokens
    python bench/arch_step.py --quick          # d=128, m=2048, k=16, 1024 tokens (a few seconds)
    python bench/arch_step.py --device 0       # GPU

The last line reads ``arch_step: <arch> <ratio>x, ...`` (ours / reference throughput per architecture).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, machine  # noqa: E402

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.runtime import parse_device  # noqa: E402
from lorasae.sae.batchtopk import BatchTopKConfig, BatchTopKSAE  # noqa: E402
from lorasae.sae.jumprelu import JumpReLUConfig, JumpReLUSAE  # noqa: E402
from lorasae.sae.matryoshka import MatryoshkaConfig, MatryoshkaSAE  # noqa: E402
from lorasae.sae.transcoder import Transcoder, TranscoderConfig  # noqa: E402


@dataclass
class ArchStepBench:
    device: str = "cpu"
    """cpu, a GPU index or cuda:N."""
    d_in: int = 512
    d_sae: int = 8192
    k: int = 32
    tokens: int = 4096
    quick: bool = False
    """A small shape (d=128, m=2048, k=16, 1024 tokens) for a quick check."""
    repeats: int = 5
    warmup: int = 1
    threads: int | None = None
    clock: str = "wall"
    """wall (throughput) or cpu (process CPU time)."""
    only: str = ""
    """Comma-separated subset of batchtopk, matryoshka, jumprelu, transcoder."""
    seed: int = 0


def _adam(params, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-4, fused=device.type == "cuda")


def _ours_step(sae: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None, device) -> Callable[[], None]:
    opt = _adam(sae.parameters(), device)

    def step() -> None:
        out = sae(x, target=y) if y is not None else sae(x)
        (out.recon + 1e-3 * out.l1).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()
        sae.after_step(out)

    return step


def _sae_lens_step(sae: torch.nn.Module, x: torch.Tensor, coefficients: dict, device) -> Callable[[], None]:
    from sae_lens.saes.sae import TrainStepInput

    opt = _adam(sae.parameters(), device)
    counter = [0]

    def step() -> None:
        out = sae.training_forward_pass(TrainStepInput(x, coefficients, None, counter[0], False))
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        counter[0] += 1

    return step


def _sparsify_step(coder: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device) -> Callable[[], None]:
    opt = _adam(coder.parameters(), device)

    def step() -> None:
        coder(x, y).fvu.backward()
        coder.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        coder.set_decoder_norm_to_unit_norm()

    return step


def pairs(
    cfg: ArchStepBench, device: torch.device
) -> dict[str, tuple[Callable[[], None], Callable[[], None]]]:
    """Architecture -> (our step, the reference's step)."""
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import (
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )

    with contextlib.redirect_stdout(sys.stderr):  # sparsify prints which decoder it uses on import
        from sparsify import SparseCoder, SparseCoderConfig

    d, m, k, n = cfg.d_in, cfg.d_sae, cfg.k, cfg.tokens
    torch.manual_seed(cfg.seed)
    x = torch.randn(n, d, device=device)
    y = torch.randn(n, d, device=device) + x
    widths = [m // 8, m // 4, m // 2, m]
    dev = str(device)
    out: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {}
    out["batchtopk"] = (
        _ours_step(
            BatchTopKSAE(BatchTopKConfig(d_in=d, d_sae=m, k=k), device=device).train(), x, None, device
        ),
        _sae_lens_step(
            BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=d, d_sae=m, k=k, device=dev)), x, {}, device
        ),
    )
    out["matryoshka"] = (
        _ours_step(MatryoshkaSAE(MatryoshkaConfig(d_in=d, d_sae=m, k=k, widths=widths), device=device), x, None, device),
        _sae_lens_step(
            MatryoshkaBatchTopKTrainingSAE(
                MatryoshkaBatchTopKTrainingSAEConfig(d_in=d, d_sae=m, k=k, matryoshka_widths=list(widths), device=dev)
            ),
            x, {}, device,
        ),
    )  # fmt: skip
    ours_j = JumpReLUSAE(JumpReLUConfig(d_in=d, d_sae=m), device=device)
    theirs_j = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=d, d_sae=m, device=dev))
    with torch.no_grad():  # a trained SAE's sparsity: each latent's threshold fires it on k/m of the tokens
        q, sample = 1 - k / m, x[:1024]
        ours_pre = ours_j.pre_activations(sample)
        ours_j.log_threshold.copy_(torch.quantile(ours_pre, q, dim=0).clamp_min(1e-3).log())
        their_pre = (sample - theirs_j.b_dec) @ theirs_j.W_enc + theirs_j.b_enc
        theirs_j.threshold.copy_(torch.quantile(their_pre, q, dim=0).clamp_min(1e-3))
    out["jumprelu"] = (_ours_step(ours_j, x, None, device), _sae_lens_step(theirs_j, x, {"l0": 1e-3}, device))
    tc = TranscoderConfig(d_in=d, d_sae=m, activation="topk", k=k, skip=True)
    sp = SparseCoder(
        d, SparseCoderConfig(num_latents=m, k=k, transcode=True, skip_connection=True), device=device
    )
    out["transcoder"] = (
        _ours_step(Transcoder(tc, device=device), x, y, device),
        _sparsify_step(sp, x, y, device),
    )
    wanted = [a.strip() for a in cfg.only.split(",") if a.strip()]
    return {a: fns for a, fns in out.items() if not wanted or a in wanted}


def main(argv: list[str] | None = None) -> None:
    cfg = parse(ArchStepBench, argv)
    if cfg.quick:
        cfg.d_in, cfg.d_sae, cfg.k, cfg.tokens = 128, 2048, 16, 1024
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = parse_device(cfg.device)
    clock = time.process_time if cfg.clock == "cpu" else time.perf_counter
    rows, ratios = [], []
    for arch, (ours, theirs) in pairs(cfg, device).items():
        t = alternate({"ours": ours, "ref": theirs}, device, cfg.repeats, cfg.warmup, clock)
        ratio = t["ref"] / t["ours"]
        ref = "sparsify" if arch == "transcoder" else "SAELens"
        rows.append([arch, ref, round(cfg.tokens / t["ours"]), round(cfg.tokens / t["ref"]), f"{ratio:.2f}x"])
        ratios.append(f"{arch} {ratio:.2f}x")
    print(
        f"{machine()}; d={cfg.d_in}, m={cfg.d_sae}, k={cfg.k}, {cfg.tokens} tokens, fp32, {cfg.clock} clock"
    )
    print(
        tabulate(
            rows, headers=["architecture", "reference", "ours tok/s", "ref tok/s", "x ref"], tablefmt="github"
        )
    )
    print("arch_step: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
