"""Training metrics: a tqdm bar with FVU, L0, dead fraction and lr; Weights & Biases only with --wandb.
Only the main rank logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm


@dataclass
class MetricMeans:
    """Running sums of per-step metrics between two log lines."""

    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def pop(self) -> dict[str, float]:
        means = {key: value / max(self.count, 1) for key, value in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


class TrainLogger:
    """`step(metrics)` every optimiser step; every `every` steps the means since the last refresh go to
    the bar (and wandb); `eval(...)` records a validation point; `message` prints above the bar."""

    def __init__(
        self,
        total_steps: int,
        initial_step: int = 0,
        every: int = 10,
        enabled: bool = True,
        wandb_run: Any = None,
        desc: str = "train SAE",
        curve_name: str = "val_ce",
    ):
        self.every = max(1, every)
        self.curve_name = curve_name  # the bar's name of the curve's value (val_fvu for a modified target)
        self.enabled = enabled
        self.wandb_run = wandb_run
        self.means = MetricMeans()
        self.last: dict[str, float] = {}
        self.val_ce: float | None = None
        self.bar = tqdm(
            total=total_steps, initial=initial_step, desc=desc, disable=not enabled, dynamic_ncols=True
        )

    def step(self, step: int, metrics: dict[str, float]) -> None:
        self.means.add(metrics)
        self.bar.update(1)
        if step % self.every == 0:
            self.last = self.means.pop()
            self._show()
            if self.wandb_run is not None:
                self.wandb_run.log({f"train/{k}": v for k, v in self.last.items()}, step=step)

    def eval(self, step: int, val_ce: float, minutes: float) -> None:
        self.val_ce = val_ce
        self._show()
        if self.wandb_run is not None:
            name = "spliced_ce" if self.curve_name == "val_ce" else self.curve_name
            self.wandb_run.log({f"val/{name}": val_ce, "val/train_minutes": minutes}, step=step)

    def _show(self) -> None:
        if not self.enabled:
            return
        shown = {key: self.last[key] for key in ("fvu", "l0", "dead_frac", "lr") if key in self.last}
        postfix = {key: f"{value:.2e}" if key == "lr" else f"{value:.4g}" for key, value in shown.items()}
        if self.val_ce is not None:
            postfix[self.curve_name] = f"{self.val_ce:.4f}"
        self.bar.set_postfix(postfix, refresh=False)

    def message(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def start_wandb(enabled: bool, project: str, name: str, config: dict[str, Any]) -> Any:
    """A wandb run when asked for (`--wandb`), else None. wandb is imported only then."""
    if not enabled:
        return None
    import wandb

    return wandb.init(project=project, name=name, config=config)
