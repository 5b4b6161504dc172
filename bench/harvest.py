"""Activation harvesting for layer L (truncated forward) vs a full forward, side by side.

Target (SPEC §6): harvest throughput >= 0.9 x n/(L+1) x full-forward throughput.

    python bench/harvest.py                       # built-in model and a Gemma-2-shaped random model, CPU
    python bench/harvest.py --device 0 --dtype bf16 --gemma_scale 1.0
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, machine  # noqa: E402

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.runtime import parse_device, parse_dtype  # noqa: E402
from lorasae.model.hooks import residual_at  # noqa: E402
from lorasae.model.load import load_model, num_layers  # noqa: E402


@dataclass
class HarvestBench:
    device: str | None = None
    """cpu, GPU index or cuda:N (default: GPU if any)."""
    dtype: str = "float32"
    """float32 or bfloat16."""
    batch_size: int = 4
    """Sequences per forward."""
    ctx_len: int = 128
    """Tokens per sequence."""
    tiny_layer: int = 1
    """Hooked layer of the built-in model."""
    gemma_layer: int = 12
    """Hooked layer of the Gemma-2-shaped model."""
    gemma_scale: float = 0.25
    """Width multiplier of the Gemma-2-2B shape (1.0 = real size: 26 layers, d=2304, vocab 256k)."""
    repeats: int = 7
    """Timed repetitions (median reported)."""
    skip_tiny: bool = False
    """Skip the built-in model (it is built on first use)."""


def gemma_shaped(scale: float) -> torch.nn.Module:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    d = max(64, int(2304 * scale) // 64 * 64)
    config = Gemma2Config(
        vocab_size=256_000,
        hidden_size=d,
        intermediate_size=4 * d,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=d // 8,
        attn_implementation="eager",
    )
    return Gemma2ForCausalLM(config).eval()


def measure(name: str, model: torch.nn.Module, layer: int, cfg: HarvestBench, device: torch.device) -> list:
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (cfg.batch_size, cfg.ctx_len), device=device)

    @torch.inference_mode()
    def full():
        model(input_ids=ids, use_cache=False)

    @torch.inference_mode()
    def harvest():
        residual_at(model, ids, layer)

    times = alternate({"full": full, "harvest": harvest}, device, repeats=cfg.repeats)
    n = num_layers(model)
    ideal = n / (layer + 1)
    ratio = times["full"] / times["harvest"]
    tokens = cfg.batch_size * cfg.ctx_len
    return [name, n, layer, tokens / times["full"], tokens / times["harvest"], ratio, ideal, ratio / ideal]


def main(cfg: HarvestBench) -> None:
    device = parse_device(cfg.device)
    dtype = parse_dtype(cfg.dtype)
    rows = []
    if not cfg.skip_tiny:
        model, _ = load_model("tiny", device=device, dtype=dtype)
        rows.append(measure("built-in tiny", model, cfg.tiny_layer, cfg, device))
        del model
    model = gemma_shaped(cfg.gemma_scale).to(device=device, dtype=dtype)
    rows.append(measure(f"gemma-2-shaped x{cfg.gemma_scale}", model, cfg.gemma_layer, cfg, device))
    headers = [
        "model",
        "layers",
        "L",
        "full tok/s",
        "harvest tok/s",
        "speed-up",
        "n/(L+1)",
        "fraction of ideal",
    ]
    print(f"machine: {machine()}, dtype {cfg.dtype}, batch {cfg.batch_size}x{cfg.ctx_len}")
    print(tabulate(rows, headers=headers, floatfmt=".3g"))
    worst = min(rows, key=lambda r: r[-1])
    print(f"harvest: {worst[-1]:.2f} of the ideal n/(L+1) speed-up (worst case: {worst[0]}; target >= 0.9)")


if __name__ == "__main__":
    main(parse(HarvestBench))
