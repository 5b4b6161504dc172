"""The small grokking run the grok tests share: modular addition at p = 11 on half the pairs, a tiny
1-layer model, a few dozen full-batch steps (fast on a CPU, and enough for full train accuracy)."""

from __future__ import annotations

from lorasae.grok_world.model import GrokModelConfig
from lorasae.grok_world.tasks import ModularTask
from lorasae.grok_world.train import GrokTrainConfig


def small_grok_config(d_model: int = 32, d_ff: int = 64, max_steps: int = 60) -> GrokTrainConfig:
    return GrokTrainConfig(
        task=ModularTask(prime=11, train_frac=0.5),
        model=GrokModelConfig(d_model=d_model, d_ff=d_ff, n_heads=2),
        lr=3e-3,
        max_steps=max_steps,
        eval_every=10,
        checkpoint_every=20,
    )
