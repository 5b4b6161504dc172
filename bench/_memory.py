"""Peak memory of one training step, shared by the bench scripts that compare two steps' memory.

On CUDA: ``torch.cuda.max_memory_allocated()`` over the step. On the CPU, where torch keeps no allocator
statistics: each variant runs in a fresh subprocess (``run_worker``) in which glibc serves every block of
64 KiB or more with mmap (``MALLOC_MMAP_THRESHOLD_=65536``), so freed tensors leave the resident set at
once; the kernel's resident-set high-water mark is reset (``/proc/self/clear_refs``) just before the
measured step; peak = the bytes of every tensor alive before the step (weights, optimiser state, ...) +
(high-water mark - resident set before the step). Like ``max_memory_allocated`` it counts tensors, not the
interpreter and libraries.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch


def tensor_bytes(things: list) -> int:
    """Bytes of the distinct storages of `things`: tensors, or optimisers (their state tensors)."""
    seen: set[int] = set()
    total = 0

    def add(t: torch.Tensor) -> None:
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()

    for thing in things:
        if isinstance(thing, torch.Tensor):
            add(thing)
        else:  # an optimiser: its state tensors
            for per_param in thing.state.values():
                for value in per_param.values():
                    if isinstance(value, torch.Tensor):
                        add(value)
    return total


def _status_kib(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1))  # type: ignore[union-attr]


def measurable(device: torch.device) -> bool:
    """Whether peak memory can be measured here (CUDA, or Linux's /proc/self/clear_refs)."""
    return device.type == "cuda" or Path("/proc/self/clear_refs").exists()


def step_peak(step: Callable[[], None], device: torch.device, state: list) -> dict:
    """Peak memory (bytes) of one call of `step` after a warm-up call, in this (fresh) process; `state`
    lists what is alive across steps (parameters, buffers, optimisers) for the CPU measurement."""
    step()  # warm-up: optimiser state exists from here on
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak": peak, "extra": peak - before, "state": before, "method": "cuda.max_memory_allocated"}
    Path("/proc/self/clear_refs").write_text("5")  # reset the resident-set high-water mark
    rss_before = _status_kib("VmRSS")
    step()
    extra = (_status_kib("VmHWM") - rss_before) * 1024
    state_bytes = tensor_bytes(state)
    return {
        "peak": state_bytes + extra,
        "extra": extra,
        "state": state_bytes,
        "method": "RSS high-water mark",
    }


def run_worker(script: str, cfg: object, which: str) -> dict:
    """Run `script --worker <which>` with the flags of dataclass `cfg` in a fresh process (mmap for every
    large block) and return the JSON object it prints last."""
    args = [sys.executable, script, "--worker", which]
    for key, value in asdict(cfg).items():  # type: ignore[call-overload]
        if key in ("worker", "memory") or value is None:
            continue
        args += [f"--{key}", str(value)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory worker {which} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_worker_result(result: dict) -> None:
    """The worker's last line: what `run_worker` reads."""
    print(json.dumps(result))


def time_then_peaks(
    script: str, cfg: Any, steps: dict[str, Callable[[], None]], device: torch.device, workers: dict[str, str]
) -> tuple[dict[str, float], dict[str, dict]]:
    """The two-step comparison both step benchmarks run: the steps' median seconds (interleaved, on
    `cfg.clock`), then — the steps dropped first, so their tensors do not weigh on the workers — each
    variant's peak memory in a fresh worker process (`workers`: step name → `--worker` value), when this
    machine can measure it (else `{}`, said on stderr)."""
    from _timing import alternate

    clock = {"wall": time.perf_counter, "cpu": time.process_time}[cfg.clock]
    secs = alternate(steps, device, repeats=cfg.repeats, warmup=cfg.warmup, clock=clock)
    steps.clear()
    gc.collect()
    if not cfg.memory:
        return secs, {}
    if not measurable(device):
        print("peak memory: needs CUDA or Linux's /proc/self/clear_refs; skipped", file=sys.stderr)
        return secs, {}
    return secs, {name: run_worker(script, cfg, which) for name, which in workers.items()}
