"""How each training cost grows: one SAE step (ours) vs width m and k; one LoRA-KL step vs the vocabulary
and the context length. One thread, process CPU time (steady on a shared machine), median of repeats.

    python bench/scaling.py                 # table + plots/bench_scaling.png
    python bench/scaling.py --quick         # fewer points (a few minutes)
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lora_step import LoraStepBench, build  # noqa: E402
from sae_step import Variant  # noqa: E402
from tabulate import tabulate  # noqa: E402

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.paths import plots_dir  # noqa: E402
from lorasae.plotting._common import save_figure  # noqa: E402
from lorasae.sae import SaeConfig, TopKSAE  # noqa: E402


@dataclass
class ScalingBench:
    d_in: int = 512
    """SAE input width."""
    tokens: int = 2048
    """Tokens per SAE step."""
    widths: str = "2048,4096,8192,16384,32768,65536"
    """SAE widths m (k = 32)."""
    ks: str = "8,16,32,64,128"
    """k values (m = 8192)."""
    vocabs: str = "32000,64000,128000,256000"
    """LoRA vocabularies (context 256)."""
    contexts: str = "128,256,512,1024"
    """LoRA context lengths (vocabulary 256,000)."""
    repeats: int = 3
    """Timed repetitions (median)."""
    quick: bool = False
    """Fewer points: m up to 16k, k up to 64, two vocabularies and contexts."""


def sae_step_seconds(d: int, m: int, k: int, tokens: int, repeats: int) -> float:
    torch.manual_seed(0)
    variant = Variant("ours", TopKSAE(SaeConfig(d_in=d, d_sae=m, k=k)), 1e-4, torch.device("cpu"), _null)
    x = torch.randn(tokens, d)
    return _cpu_median(lambda: variant.step(x), repeats)


def lora_step_seconds(vocab: int, ctx: int, repeats: int) -> float:
    cfg = LoraStepBench(vocab_size=vocab, ctx_len=ctx, d_model=128, layers=2, threads=1, memory=False)
    steps, _, _ = build(cfg)
    return _cpu_median(steps["KL (ours)"], repeats)


def _null():
    import contextlib

    return contextlib.nullcontext()


def _cpu_median(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return sorted(times)[len(times) // 2]


def main(cfg: ScalingBench) -> None:
    torch.set_num_threads(1)
    widths = [int(v) for v in cfg.widths.split(",")]
    ks = [int(v) for v in cfg.ks.split(",")]
    vocabs = [int(v) for v in cfg.vocabs.split(",")]
    contexts = [int(v) for v in cfg.contexts.split(",")]
    if cfg.quick:
        widths, ks = [w for w in widths if w <= 16384], [k for k in ks if k <= 64]
        vocabs, contexts = vocabs[::2] + vocabs[-1:], contexts[:1] + contexts[-1:]
    rows = []
    by_m = [(m, sae_step_seconds(cfg.d_in, m, 32, cfg.tokens, cfg.repeats)) for m in widths]
    rows += [["SAE step", f"m={m}, k=32", 1e3 * s] for m, s in by_m]
    by_k = [(k, sae_step_seconds(cfg.d_in, 8192, k, cfg.tokens, cfg.repeats)) for k in ks]
    rows += [["SAE step", f"m=8192, k={k}", 1e3 * s] for k, s in by_k]
    by_v = [(v, lora_step_seconds(v, 256, cfg.repeats)) for v in vocabs]
    rows += [["LoRA-KL step", f"V={v}, T=256", 1e3 * s] for v, s in by_v]
    by_t = [(t, lora_step_seconds(256_000, t, cfg.repeats)) for t in contexts]
    rows += [["LoRA-KL step", f"V=256000, T={t}", 1e3 * s] for t, s in by_t]
    print(f"one thread, process CPU time, median of {cfg.repeats}; SAE d={cfg.d_in}, {cfg.tokens} tokens; "
          "LoRA: Gemma-2-like d=128, 2 layers, rank 64, SAE at layer 1")  # fmt: skip
    print(tabulate(rows, headers=["step", "setting", "ms"], tablefmt="github", floatfmt=".1f"))
    plot(by_m, by_k, by_v, by_t)


def plot(by_m, by_k, by_v, by_t) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [
        (by_m, "SAE width m (k=32)", "SAE step, ms"),
        (by_k, "k (m=8192)", "SAE step, ms"),
        (by_v, "vocabulary V (T=256)", "LoRA-KL step, ms"),
        (by_t, "context length T (V=256k)", "LoRA-KL step, ms"),
    ]
    for ax, (points, xlabel, ylabel) in zip(axes, panels):
        xs, ys = [p[0] for p in points], [1e3 * p[1] for p in points]
        ax.plot(xs, ys, "o-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle("How the step costs grow (CPU, one thread, process time)")
    fig.tight_layout()
    path = save_figure(fig, plots_dir(), "bench_scaling")[0]
    print(f"figure: {path}")
    return path


if __name__ == "__main__":
    main(parse(ScalingBench))
