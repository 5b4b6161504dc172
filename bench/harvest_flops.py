"""Harvest throughput of a real-shape model (random weights) to layer L, against the model's FLOP bound.

The truncated forward (`lorasae.model.hooks.residual_at`) of `batch` sequences of `ctx_len` tokens; FLOPs per
token = 2 x (embedding-free parameters of layers 0..L) + attention scores and values (4 x T_eff x heads x
head_dim per layer, T_eff the mean attended length: causal, capped by Gemma-2's sliding window on
alternate layers). Achieved TFLOP/s / `--peak_tflops` is the fraction of the bound.

    python bench/harvest_flops.py --device 0 --model gemma-2-2b --layer 12 --batch 32   # GPU, bf16
    python bench/harvest_flops.py --device cpu --tiny                                   # dry run
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _timing import median_seconds  # noqa: E402

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.precision import attention_implementation  # noqa: E402
from lorasae.core.runtime import parse_device, parse_dtype  # noqa: E402
from lorasae.model.hooks import residual_at  # noqa: E402
from lorasae.model.paper_shapes import Shrink, random_model, real_config, shrunk_config  # noqa: E402

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by device-name substring
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}


@dataclass
class HarvestFlopsBench:
    device: str | None = None
    """cpu, a GPU index or cuda:N (default: the GPU if any)."""
    model: str = "gemma-2-2b"
    """Model shape (lorasae.model.paper_shapes.REAL_CONFIGS)."""
    layer: int = 12
    """Harvested layer."""
    batch: int = 32
    """Sequences per forward."""
    ctx_len: int = 1024
    """Tokens per sequence."""
    dtype: str = "bfloat16"
    """Model dtype."""
    repeats: int = 5
    """Timed forwards (median)."""
    peak_tflops: float | None = None
    """The device's peak TFLOP/s in this dtype. Default: looked up by GPU name (none on the CPU)."""
    tiny: bool = False
    """Toy widths of the same architecture (dry run)."""


def flops_per_token(config, layer: int, ctx_len: int) -> float:
    """Forward FLOPs per token of layers 0..layer (matmuls; norms and activations are negligible)."""
    d, heads, kv, hd = (config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
                        config.head_dim)  # fmt: skip
    proj = d * heads * hd * 2 + d * kv * hd * 2  # q, o; k, v
    mlp = 3 * d * config.intermediate_size
    total = 0.0
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    for i in range(layer + 1):
        t_eff = (ctx_len + 1) / 2
        if types[i] == "sliding_attention" and window and window < ctx_len:
            t_eff = window - window * window / (2 * ctx_len)  # mean of min(t, window) over positions
        total += 2 * (proj + mlp) + 4 * t_eff * heads * hd
    return total


def main(cfg: HarvestFlopsBench) -> dict:
    device, dtype = parse_device(cfg.device), parse_dtype(cfg.dtype)
    if cfg.tiny:
        config = shrunk_config(cfg.model, Shrink(layers=4))
        cfg.layer, cfg.batch, cfg.ctx_len, cfg.repeats = min(cfg.layer, 2), 2, 64, 2
    else:
        config = real_config(cfg.model)
    attn = attention_implementation(config.model_type, device) or "sdpa"
    config._attn_implementation = attn
    model = random_model(config, dtype).to(device)
    model.config._attn_implementation = attn
    ids = torch.randint(0, config.vocab_size, (cfg.batch, cfg.ctx_len), device=device)

    @torch.inference_mode()
    def harvest() -> None:
        residual_at(model, ids, cfg.layer)

    seconds = median_seconds(harvest, device, repeats=cfg.repeats, warmup=1)
    tokens = cfg.batch * cfg.ctx_len
    tflops = flops_per_token(config, cfg.layer, cfg.ctx_len) * tokens / seconds / 1e12
    peak = cfg.peak_tflops
    if peak is None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    frac = f"{100 * tflops / peak:.0f}% of {peak:.0f}" if peak else "n/a"
    print(
        f"harvest_flops: {cfg.model}{' (tiny)' if cfg.tiny else ''} to layer {cfg.layer}, {cfg.dtype}, "
        f"attention {attn}, batch {cfg.batch}x{cfg.ctx_len}: {tokens / seconds:,.0f} tok/s, "
        f"{tflops:.1f} TFLOP/s ({frac} TFLOP/s peak)"
    )
    return {"tok_s": tokens / seconds, "tflops": tflops, "peak": peak}


if __name__ == "__main__":
    main(parse(HarvestFlopsBench))
