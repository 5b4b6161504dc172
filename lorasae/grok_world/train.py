"""Training the featurizing model until it groks: full-batch AdamW with strong weight decay (Power et al.;
Nanda et al.'s recipe: lr 1e-3, weight decay 1, betas (0.9, 0.98)), loss on the answer at the last
position, accuracy curves, checkpoints (model + optimizer, so a run continues exactly from any of them:
the clamping experiment does), and the two milestone steps: train accuracy first 1.0 and test accuracy
first above 0.95.

`ensure_grok_model()` returns the final model's folder, training it on first use (like the built-in tiny
model); `MODEL_REGISTRY["grok"]` points at it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from simple_parsing import field as cli_field
from tqdm.auto import tqdm
from transformers import LlamaForCausalLM

from lorasae.core import grok_paths
from lorasae.core.atomic import atomic_dir, atomic_write_json, read_output_json
from lorasae.grok_world.model import GrokModelConfig, build_model, last_logits, save_model
from lorasae.grok_world.tasks import ModularTask

GROK_ACC = 0.95  # test accuracy that counts as generalized (the threshold)


@dataclass
class GrokTrainConfig:
    """Task, model and optimiser of one grokking run (defaults: modular addition at p = 97)."""

    task: ModularTask = field(default_factory=ModularTask)
    model: GrokModelConfig = field(default_factory=GrokModelConfig)
    lr: float = 1e-3
    """AdamW learning rate (constant)."""
    weight_decay: float = 1.0
    """AdamW weight decay: what makes the memorising solution lose to the generalising one."""
    beta1: float = 0.9
    beta2: float = 0.98
    max_steps: int = 3000
    """Full-batch steps at most."""
    stop_test_acc: float = 0.99
    """Stop once test accuracy reaches this (after train accuracy reached 1.0)."""
    eval_every: int = cli_field(default=25, alias=["--eval_every_steps"])
    """Steps between accuracy evaluations (the curves' resolution): --eval_every_steps (--eval_every,
    train_lora.py's count of sequences, kept here as an alias)."""
    checkpoint_every: int = 50
    """Steps between saved checkpoints (model + optimizer state)."""
    seed: int = 0
    """Seed of the model's initialisation."""

    @property
    def run_name(self) -> str:
        return f"{self.task.name}_d{self.model.d_model}_L{self.model.n_layers}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GrokTrainConfig:
        d = dict(d)
        return cls(task=ModularTask(**d.pop("task")), model=GrokModelConfig(**d.pop("model")), **d)


@dataclass
class Curves:
    """Accuracy and loss after each evaluated step (step 0 = initialisation)."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def first_step(self, key: str, threshold: float) -> int | None:
        """First evaluated step at which `key` (train_acc, test_acc) is ≥ threshold (None if never)."""
        return next((s for s, v in zip(self.step, getattr(self, key)) if v >= threshold), None)


Data = dict[str, tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Data) -> dict[str, float]:
    """Loss and accuracy on the train and test sets (model in eval mode, restored afterwards)."""
    was_training = model.training
    model.eval()
    out = {}
    for part in ("train", "test"):
        ids, labels = data[part]
        logits = last_logits(model, ids)
        out[f"{part}_loss"] = float(F.cross_entropy(logits, labels))
        out[f"{part}_acc"] = float((logits.argmax(-1) == labels).float().mean())
    model.train(was_training)
    return out


def make_optimizer(model: torch.nn.Module, cfg: GrokTrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2)
    )


def train_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Data,
    start: int,
    end: int,
    eval_every: int,
    on_eval: Callable[[int, dict[str, float]], bool] | None = None,
    desc: str = "grok",
) -> Curves:
    """Full-batch steps start+1 … end; evaluates at `start` and every `eval_every` steps (and at the end).
    `on_eval(step, metrics)` may save a checkpoint; returning True stops the run early."""
    ids, labels = data["train"]
    curves = Curves()
    t0 = time.perf_counter()

    def record(step: int) -> bool:
        metrics = evaluate(model, data)
        for key, value in metrics.items():
            getattr(curves, key).append(value)
        curves.step.append(step)
        curves.seconds.append(time.perf_counter() - t0)
        bar.set_postfix(train=f"{metrics['train_acc']:.3f}", test=f"{metrics['test_acc']:.3f}")
        return bool(on_eval(step, metrics)) if on_eval else False

    model.train()
    with tqdm(range(start + 1, end + 1), desc=desc, leave=False) as bar:
        if record(start):
            return curves
        for step in bar:
            loss = F.cross_entropy(last_logits(model, ids), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if (step % eval_every == 0 or step == end) and record(step):
                break
    model.eval()
    return curves


# --- checkpoints -------------------------------------------------------------------------------------


def save_checkpoint(
    folder: Path, model: LlamaForCausalLM, optimizer: torch.optim.Optimizer, task: ModularTask, info: dict
) -> Path:
    """Model + tokenizer (loadable with `load_model(folder)`), optimizer state and `state.json`."""
    with atomic_dir(folder) as tmp:
        save_model(model, task, tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        atomic_write_json(tmp / "state.json", info)
    return folder


def load_checkpoint(folder: Path, cfg: GrokTrainConfig) -> tuple[LlamaForCausalLM, torch.optim.AdamW, dict]:
    """(model in train mode, its AdamW with the saved state, state.json) of a checkpoint folder."""
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    optimizer = make_optimizer(model, cfg)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    return model.train(), optimizer, read_output_json(folder / "state.json")


def checkpoint_steps(run_name: str, base: Path | None = None) -> list[int]:
    """Steps of the complete checkpoints saved for a run, ascending."""
    root = grok_paths.grok_checkpoint_dir(run_name, 0, base).parent
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*") if (p / "state.json").is_file()]
    return sorted(int(p.name.removeprefix("step_")) for p in done)


# --- one run -----------------------------------------------------------------------------------------


@dataclass
class GrokResult:
    run_name: str
    curves: Curves
    train_acc_step: int | None  # first step with train accuracy 1.0
    grok_step: int | None  # first step with test accuracy > GROK_ACC
    seconds: float
    final_dir: Path

    def summary(self) -> dict:
        last = len(self.curves.step) - 1
        return {
            "run": self.run_name,
            "train_acc_1_step": self.train_acc_step,
            "test_acc_95_step": self.grok_step,
            "final_step": self.curves.step[last],
            "final_train_acc": self.curves.train_acc[last],
            "final_test_acc": self.curves.test_acc[last],
            "seconds": round(self.seconds, 1),
        }


def train_grok(cfg: GrokTrainConfig, base: Path | None = None, progress: bool = True) -> GrokResult:
    """Train from scratch until test accuracy reaches `stop_test_acc` (or `max_steps`); checkpoints every
    `checkpoint_every` steps, then the final model, curves and a summary under the run's paths."""
    name = cfg.run_name
    data = cfg.task.datasets()
    model = build_model(cfg.task, cfg.model, cfg.seed)
    optimizer = make_optimizer(model, cfg)
    t0 = time.perf_counter()

    def on_eval(step: int, metrics: dict[str, float]) -> bool:
        if step % cfg.checkpoint_every == 0:
            save_checkpoint(
                grok_paths.grok_checkpoint_dir(name, step, base),
                model,
                optimizer,
                cfg.task,
                {"step": step, **metrics},
            )
        return metrics["train_acc"] >= 1.0 and metrics["test_acc"] >= cfg.stop_test_acc

    curves = train_steps(model, optimizer, data, 0, cfg.max_steps, cfg.eval_every, on_eval, desc=name)
    seconds = time.perf_counter() - t0
    final = grok_paths.grok_model_dir(name, base)
    info = {"step": curves.step[-1], "train_acc": curves.train_acc[-1], "test_acc": curves.test_acc[-1]}
    save_checkpoint(final, model, optimizer, cfg.task, info)
    result = GrokResult(
        name,
        curves,
        curves.first_step("train_acc", 1.0),
        curves.first_step("test_acc", GROK_ACC),
        seconds,
        final,
    )
    out = grok_paths.grok_data_dir(name, base)
    atomic_write_json(out / "curves.json", dataclasses.asdict(curves))
    atomic_write_json(out / "train_summary.json", {**result.summary(), "config": cfg.to_dict()})
    if progress:
        print(
            f"[grok] {name}: train acc 1.0 at step {result.train_acc_step}, test acc > {GROK_ACC} at step "
            f"{result.grok_step}, {curves.step[-1]} steps in {seconds:.0f} s"
        )
    return result


def ensure_grok_model(cfg: GrokTrainConfig | None = None, base: Path | None = None) -> Path:
    """The final model folder of the run `cfg` (default settings when None), trained first if missing."""
    cfg = cfg or GrokTrainConfig()
    final = grok_paths.grok_model_dir(cfg.run_name, base)
    if not (final / "state.json").is_file():
        train_grok(cfg, base)
    return final
