"""An e2e SAE training step on the lean chunked KL (``lorasae.train.objectives.e2e_step``, the LoRA
trainer's ``lorasae.kl.chunked_kl`` with the LM head applied per chunk of positions) vs the step as it was
before: full [B, T, V] logits of the original and the spliced model and ``lorasae.core.losses.kl_next_token``
(kept here only, as the reference). Gemma-2-like model with the full 256k vocabulary and final-logit
soft-capping, at a width that fits the CPU.

Both steps train the same TopK SAE (spliced after layer L of the frozen model) on the same batch with the
trainer's optimiser and the trainer's step (backward, removal of the decoder-gradient component parallel to
the decoder rows, clipping at 1.0, optimiser step, decoder renormalisation); only the KL differs. Before
timing, the script checks that both give the same loss from the same weights.

Throughput: the two steps alternate in one process (median of ``--repeats``). Peak memory: each variant
in a fresh subprocess, measured as in ``bench/lora_step.py`` (see ``bench/_memory.py``).

    python bench/e2e_step.py                                       # CPU, fp32, d=128, 4 layers, 256k vocab
    python bench/e2e_step.py --device 0 --dtype bfloat16 --d_model 2304 --layers 26 --sae_layer 12
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gemma import GemmaStepBench, gemma2_like  # noqa: E402
from _memory import print_worker_result, step_peak, time_then_peaks  # noqa: E402
from _timing import machine  # noqa: E402

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.losses import kl_next_token  # noqa: E402
from lorasae.core.runtime import parse_device, parse_dtype  # noqa: E402
from lorasae.model.hooks import splice  # noqa: E402
from lorasae.sae import SaeConfig, TopKSAE  # noqa: E402
from lorasae.train.objectives import e2e_head, e2e_step  # noqa: E402
from lorasae.train.optim import make_optimizer  # noqa: E402

LEAN, FULL = "e2e, lean chunked KL (now)", "e2e, full-logit KL (before)"


@dataclass
class E2EStepBench(GemmaStepBench):
    """The SAE is fp32 whatever --dtype says, as in train_sae.py; --worker takes lean or full."""

    d_model: int = 128
    """Hidden width (Gemma-2-2B: 2304)."""
    kl_chunk_size: int = 0
    """Positions per KL chunk of the lean step (0: the default, about 128 MiB of fp32 logits)."""


def full_logit_e2e_loss(
    model: torch.nn.Module, sae: TopKSAE, input_ids: torch.Tensor, layer: int
) -> torch.Tensor:
    """The e2e loss as `e2e_step` computed it before the lean KL: [B, T, V] logits of the original and of
    the spliced model, then `kl_next_token` (log-softmaxes of both, `kl_div` summed / B)."""
    with torch.no_grad():
        original = model(input_ids=input_ids, use_cache=False).logits

    def reconstruct(hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.reshape(-1, hidden.shape[-1]).float()
        return sae(x).x_hat.reshape(hidden.shape).to(hidden.dtype)

    with splice(model, {layer: reconstruct}):
        spliced = model(input_ids=input_ids, use_cache=False).logits
    return kl_next_token(original, spliced)


def build(cfg: E2EStepBench) -> tuple[dict[str, Callable[[], None]], torch.device, list]:
    """The two step functions (lean, full-logit) on one frozen model, SAE, batch and optimiser."""
    device, dtype = parse_device(cfg.device), parse_dtype(cfg.dtype)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = gemma2_like(cfg.vocab_size, cfg.d_model, cfg.layers, cfg.ctx_len).to(device=device, dtype=dtype)
    model.eval().requires_grad_(False)
    sae = TopKSAE(SaeConfig(cfg.d_model, cfg.d_model * cfg.expansion, cfg.k), device=device)
    optimizer, _ = make_optimizer(sae.parameters(), 2e-4, device)
    batch = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.ctx_len), device=device)
    head = e2e_head(model, batch[:1, :16])
    if head is None:
        raise RuntimeError("the Gemma-2-like model's head did not verify: the lean path would not be taken")
    chunk = cfg.kl_chunk_size or None

    def lean_loss() -> torch.Tensor:
        return e2e_step(model, sae, batch, cfg.sae_layer, 0.0, None, head=head, chunk_size=chunk)[0]

    def full_loss() -> torch.Tensor:
        return full_logit_e2e_loss(model, sae, batch, cfg.sae_layer)

    def finish(loss: torch.Tensor) -> None:  # SaeTrainer._train_step after the loss
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()

    if not cfg.worker:  # same weights, same loss (fp32: to 1e-4; bf16 logits round differently)
        with torch.no_grad():
            lean, full = lean_loss().item(), full_loss().item()
        tolerance = 1e-4 if dtype == torch.float32 else 2e-2
        if abs(lean - full) > tolerance * abs(full):
            raise RuntimeError(f"the two e2e losses differ: lean {lean:.6g} vs full-logit {full:.6g}")
        print(
            f"check: lean loss {lean:.6g} = full-logit loss {full:.6g} (rel. diff {abs(lean - full) / full:.1e})"
        )
    steps = {LEAN: lambda: finish(lean_loss()), FULL: lambda: finish(full_loss())}
    state = [*model.parameters(), *model.buffers(), *sae.parameters(), *sae.buffers(), batch, optimizer]
    return steps, device, state


def measure_peak(cfg: E2EStepBench) -> dict:
    """Peak memory (bytes) of one step of variant ``cfg.worker``, in this (fresh) process."""
    steps, device, state = build(cfg)
    return step_peak(steps[LEAN if cfg.worker == "lean" else FULL], device, state)


def main(cfg: E2EStepBench) -> None:
    if cfg.worker:
        print_worker_result(measure_peak(cfg))
        return
    steps, device, _ = build(cfg)
    tokens = cfg.batch_size * cfg.ctx_len
    t0 = time.perf_counter()
    secs, mem = time_then_peaks(__file__, cfg, steps, device, {LEAN: "lean", FULL: "full"})
    rows = []
    for name, s in secs.items():
        row = [name, 1e3 * s, tokens / s]
        if mem:
            row += [mem[name]["peak"] / 2**20, mem[name]["extra"] / 2**20]
        rows.append(row)
    headers = ["step", "ms/step", "tok/s"] + (["peak MiB", "of which step MiB"] if mem else [])
    print(
        f"machine: {machine()}, device {device}, dtype {cfg.dtype}; Gemma-2-like: vocab {cfg.vocab_size}, "
        f"d={cfg.d_model}, {cfg.layers} layers; e2e TopK SAE at layer {cfg.sae_layer} (x{cfg.expansion}, "
        f"k={cfg.k}); batch {cfg.batch_size}x{cfg.ctx_len}; {cfg.clock} clock, median of {cfg.repeats} "
        f"alternating steps ({time.perf_counter() - t0:.0f} s in all)"
    )
    print(tabulate(rows, headers=headers, floatfmt=".4g"))
    speed = secs[FULL] / secs[LEAN]
    line = f"e2e_step: lean KL step {speed:.2f}x the throughput of the full-logit step"
    if mem:
        ratio = mem[LEAN]["peak"] / mem[FULL]["peak"]
        print(f"peak memory measured by {mem[LEAN]['method']}, one fresh process per variant")
        line += f", peak memory {ratio:.2f}x"
    print(line)


if __name__ == "__main__":
    main(parse(E2EStepBench))
