"""The LoRA-KL step's target pass (the original model inside the PeftModel) through `BaseView` vs peft's
`disable_adapter()` + eval mode (the trainer's way before): the whole KL step of `train_lora.py`
(`KLObjective` forward + backward) on the built-in model's shape (4 layers, d=128, its vocabulary),
rank 16 on every layer, one 128-token sequence, the two variants interleaved in one process.

    python bench/base_view.py
    python bench/base_view.py --d_model 2304 --layers 26 --vocab 256000 --ctx_len 1024   (a GPU box)
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import alternate  # noqa: E402

from lorasae.core.cli import parse  # noqa: E402


@dataclass
class BaseViewBench:
    d_model: int = 128
    layers: int = 4
    vocab: int = 4096
    ctx_len: int = 128
    rank: int = 16
    repeats: int = 30
    device: str = "cpu"


class _PeftTarget:
    """The reference: peft's context manager and eval mode around the target pass."""

    def __init__(self, model):
        self.model = model

    @contextlib.contextmanager
    def base(self):
        was_training = self.model.training
        self.model.eval()
        try:
            with self.model.disable_adapter():
                yield
        finally:
            self.model.train(was_training)


def main(cfg: BaseViewBench) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from lorasae.lora.adapters import attach_lora
    from lorasae.lora.trainer import KLObjective
    from lorasae.sae import SaeConfig, TopKSAE

    torch.manual_seed(0)
    device = torch.device(cfg.device)
    config = LlamaConfig(
        vocab_size=cfg.vocab, hidden_size=cfg.d_model, intermediate_size=4 * cfg.d_model,
        num_hidden_layers=cfg.layers, num_attention_heads=max(1, cfg.d_model // 32),
        max_position_embeddings=cfg.ctx_len,
    )  # fmt: skip
    model = LlamaForCausalLM(config).to(device)
    model.requires_grad_(False)
    peft = attach_lora(model, list(range(cfg.layers)), rank=cfg.rank)
    sae = TopKSAE(SaeConfig.from_expansion(cfg.d_model, 8, 4, hook_layer=1)).to(device).requires_grad_(False)
    splices = lambda ids: {1: lambda h: sae.reconstruct(h).to(h.dtype)}  # noqa: E731
    objective = KLObjective(peft, splices)
    ids = torch.randint(0, cfg.vocab, (1, cfg.ctx_len), device=device)
    views = {"BaseView (ours)": objective.base_view, "disable_adapter + eval (before)": _PeftTarget(peft)}
    with torch.no_grad():
        targets = {}
        for name, view in views.items():
            objective.base_view = view
            targets[name] = objective.target(ids)
    first, second = targets.values()
    assert torch.equal(first, second), "the two target passes differ"

    def step(view):
        def run():
            objective.base_view = view
            peft.train()
            loss = objective(ids)
            loss.backward()

        return run

    seconds = alternate({name: step(view) for name, view in views.items()}, device, repeats=cfg.repeats)
    ours, before = seconds["BaseView (ours)"], seconds["disable_adapter + eval (before)"]
    rows = [[name, f"{1000 * s:.1f}"] for name, s in seconds.items()]
    print(tabulate(rows, headers=["KL step (forward + backward)", "ms (median)"]))
    print(f"base_view: {before / ours:.2f}x the step speed of disable_adapter + eval (identical targets)")


if __name__ == "__main__":
    main(parse(BaseViewBench))
