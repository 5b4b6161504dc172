"""A LoRA-KL training step (ours) vs a plain LoRA cross-entropy step on the same batch: peak memory and
throughput, with a Gemma-2-like 256k vocabulary.

Both steps use the same PeftModel (LoRA rank r on the seven projections of every layer), the same frozen
TopK SAE spliced after layer L, the same batch, AdamW and gradient clipping; only the objective differs:

- KL (ours, the trainer's ``KLObjective``): the target distribution comes from the same model with its
  adapters disabled and the SAE off (no second copy), and the full-vocabulary KL is computed in chunks of
  positions straight from the final hidden states (``--kl_impl fused``): no [T, V] tensor exists;
- CE (plain): ``model(input_ids, labels=input_ids).loss``, transformers' own path ([T, V] logits, Gemma's
  soft-capping, cross-entropy).

SPEC §6 targets: peak memory KL/CE <= 1.3, throughput KL/CE >= 0.7.

Throughput: the two steps alternate in one process (median of ``--repeats``). Peak memory: each variant
runs in a fresh subprocess. On CUDA: ``torch.cuda.max_memory_allocated()`` over one step (after a warm-up
step). On the CPU, where torch keeps no allocator statistics: glibc is told to serve every block of 64 KiB
or more with mmap (``MALLOC_MMAP_THRESHOLD_=65536``), so that freed tensors leave the resident set at once;
the kernel's resident-set high-water mark is reset (``/proc/self/clear_refs``) just before the measured
step; peak = the bytes of every tensor alive before the step (weights, adapters, optimiser state) + (high
water mark - resident set before the step). Like ``max_memory_allocated`` it counts tensors, not the
interpreter and libraries.

    python bench/lora_step.py                                      # CPU, fp32, d=256, 4 layers, 256k vocab
    python bench/lora_step.py --device 0 --dtype bfloat16 --d_model 2304 --layers 26 --sae_layer 12
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
from lorasae.core.runtime import parse_device, parse_dtype  # noqa: E402
from lorasae.lora.adapters import attach_lora  # noqa: E402
from lorasae.lora.trainer import KLObjective, sae_splices  # noqa: E402
from lorasae.model.hooks import splice  # noqa: E402
from lorasae.sae import SaeConfig, TopKSAE  # noqa: E402


@dataclass
class LoraStepBench(GemmaStepBench):
    rank: int = 64
    """LoRA rank (on all seven projections of every layer)."""
    kl_impl: str = "fused"
    """KL implementation of the KL step: fused, chunked or naive."""
    kl_chunk_size: int = 0
    """Positions per KL chunk (0: about 128 MiB of fp32 logits per chunk)."""


def build(cfg: LoraStepBench) -> tuple[dict[str, Callable[[], None]], torch.device, list[torch.Tensor]]:
    """The two step functions (KL, CE), sharing one model, SAE, batch and optimiser."""
    device, dtype = parse_device(cfg.device), parse_dtype(cfg.dtype)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = gemma2_like(cfg.vocab_size, cfg.d_model, cfg.layers, cfg.ctx_len).to(device=device, dtype=dtype)
    sae = TopKSAE(SaeConfig(cfg.d_model, cfg.d_model * cfg.expansion, cfg.k), device=device, dtype=dtype)
    sae.requires_grad_(False)
    peft = attach_lora(model, list(range(cfg.layers)), cfg.rank)
    peft.train()
    splices = sae_splices({cfg.sae_layer: sae}, special_ids=[])
    batch = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.ctx_len), device=device)
    objective = KLObjective(peft, splices, cfg.kl_impl, cfg.kl_chunk_size)
    objective.check_fused(batch[:1, :16])
    params = [p for p in peft.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.01)

    def finish(loss: torch.Tensor) -> None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def kl_step() -> None:
        finish(objective(batch))

    def ce_step() -> None:
        with splice(peft, splices(batch)):
            loss = peft(input_ids=batch, labels=batch, use_cache=False).loss
        finish(loss)

    state = [*peft.parameters(), *peft.buffers(), *sae.parameters(), *sae.buffers()]
    return {"KL (ours)": kl_step, "CE (plain)": ce_step}, device, state + [optimizer]  # type: ignore[list-item]


def measure_peak(cfg: LoraStepBench) -> dict:
    """Peak memory (bytes) of one step of variant ``cfg.worker``, in this (fresh) process."""
    steps, device, state = build(cfg)
    return step_peak(steps["KL (ours)" if cfg.worker == "kl" else "CE (plain)"], device, state)


def main(cfg: LoraStepBench) -> None:
    if cfg.worker:
        print_worker_result(measure_peak(cfg))
        return
    steps, device, _ = build(cfg)
    tokens = cfg.batch_size * cfg.ctx_len
    t0 = time.perf_counter()
    secs, mem = time_then_peaks(__file__, cfg, steps, device, {"KL (ours)": "kl", "CE (plain)": "ce"})
    rows = []
    for name, s in secs.items():
        row = [name, 1e3 * s, tokens / s]
        if mem:
            m = mem[name]
            row += [m["peak"] / 2**20, m["extra"] / 2**20]
        rows.append(row)
    headers = ["step", "ms/step", "tok/s"] + (["peak MiB", "of which step MiB"] if mem else [])
    print(
        f"machine: {machine()}, device {device}, dtype {cfg.dtype}; Gemma-2-like: vocab {cfg.vocab_size}, "
        f"d={cfg.d_model}, {cfg.layers} layers, SAE at layer {cfg.sae_layer} (x{cfg.expansion}, k={cfg.k}), "
        f"LoRA rank {cfg.rank} on all layers; batch {cfg.batch_size}x{cfg.ctx_len}; KL impl {cfg.kl_impl}; "
        f"{cfg.clock} clock, median of {cfg.repeats} alternating steps ({time.perf_counter() - t0:.0f} s in all)"
    )
    print(tabulate(rows, headers=headers, floatfmt=".4g"))
    speed = secs["CE (plain)"] / secs["KL (ours)"]
    if mem:
        method = mem["KL (ours)"]["method"]
        ratio = mem["KL (ours)"]["peak"] / mem["CE (plain)"]["peak"]
        print(f"peak memory measured by {method}, one fresh process per variant")
        print(
            f"lora_step: peak memory {ratio:.2f}x plain CE (target <= 1.3), "
            f"throughput {speed:.2f}x plain CE (target >= 0.7)"
        )
    else:
        print(f"lora_step: throughput {speed:.2f}x plain CE (target >= 0.7)")


if __name__ == "__main__":
    main(parse(LoraStepBench))
