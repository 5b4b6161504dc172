"""`make demo`: the paper's pipeline end to end on the built-in model, on the CPU, with no network.

Stages (each skipped when its outputs exist, so a rerun is cheap; `--force` reruns everything):
 1. the built-in world (corpus, tokenizer, pretrained tiny model)
 2. TopK SAEs at the other k of the L0 sweep
 3. the main TopK SAE with its 10 %…100 % checkpoints, and 4. an e2e SAE on the same token budget
 5. LoRA from several TopK checkpoints (the timing experiment)
 6. LoRA for every (k, rank) of the sweep, and 7. a LoRA on one layer at a time after the SAE
 8. a rank-1 LoRA on the layers after the SAE (the steering eval's adapter; every run saves its adapter,
    so the eval commands of README work after the demo)
 9. every figure; then a table of L_base, L_SAE, L_LoRA and % of gap closed per run, the e2e speed-up,
    and (from the repository) README's results block rewritten.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorasae import paths
from lorasae.atomic import atomic_write_json
from lorasae.cli import parse
from lorasae.demo_readme import update_readme
from lorasae.errors import main_guard

# Only the main TopK SAE, the e2e SAE and the LoRA runs from checkpoints draw curves (the timing figure and
# the speed-up); the sweep runs report their final CE, so they validate less often: every 10 % of SAE
# training, and before and after LoRA training.
SWEEP_EVAL_EVERY_PCT = 10.0


@dataclass
class DemoConfig:
    """Run the paper's pipeline on the built-in model."""

    device: str = "cpu"
    """Device for every stage."""

    layer: int = 1
    """Decoder layer of the SAE (the built-in model has 4)."""

    sae_tokens: int = 300_000
    """Training tokens of each SAE (TopK and e2e get the same budget)."""

    lora_examples: int = 160
    """Training sequences of each LoRA run."""

    rank: int = 16
    """LoRA rank of the timing experiment and the one-layer runs."""

    ranks: tuple[int, ...] = (1, 4, 16, 64)
    """LoRA ranks of the sweep (each on the final TopK SAE of every k)."""

    checkpoints: tuple[int, ...] = (20, 40, 60, 80, 100)
    """TopK SAE checkpoints (percent of training) to adapt with LoRA."""

    sweep_k: tuple[int, ...] = (2, 8)
    """Extra SAE sparsities k for the L0 sweep (the main SAE's default k is added); LoRA runs on each
    at every rank."""

    force: bool = False
    """Rerun every stage even when its outputs exist."""

    readme: bool = True
    """Rewrite the results block of README.md (between its demo markers) and docs/demo_timing.png."""

    seed: int = 42
    """Random seed."""


class Stages:
    """Numbered progress lines with wall time; a stage whose outputs exist is skipped. The time of each
    stage that ran is kept in `record` (JSON), so the total of a run from scratch survives reruns."""

    def __init__(self, total: int, record: Path):
        self.total, self.index, self.start, self.record = total, 0, time.perf_counter(), record
        try:
            self.seconds: dict[str, float] = dict(json.loads(record.read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            self.seconds = {}

    def run(self, title: str, done: bool, fn: Callable[[], object]) -> None:
        self.index += 1
        prefix = f"[{self.index}/{self.total}] {title}"
        if done:
            print(f"{prefix}: outputs exist, skipped", flush=True)
            return
        print(f"{prefix} ...", flush=True)
        began = time.perf_counter()
        fn()
        seconds = time.perf_counter() - began
        print(f"{prefix}: done in {seconds:.0f} s", flush=True)
        self.seconds[str(self.index)] = round(seconds, 1)
        atomic_write_json(self.record, {"machine": _machine(), "seconds": self.seconds})

    def elapsed_minutes(self) -> float:
        return (time.perf_counter() - self.start) / 60

    def recorded_minutes(self) -> float:
        """The sum of the last recorded time of every stage: the demo's time from scratch."""
        return sum(self.seconds.values()) / 60

    def machine(self) -> str:
        try:
            return str(json.loads(self.record.read_text())["machine"])
        except (OSError, ValueError, KeyError, TypeError):
            return _machine()


def _world_summary() -> str:
    from lorasae.world.tiny_model import ensure_tiny_model

    folder = ensure_tiny_model()
    info = json.loads((folder / "world.json").read_text())
    return (
        f"built-in model: validation CE {info['val_ce']:.3f} nats/token vs unigram entropy "
        f"{info['unigram_entropy']:.3f} ({folder})"
    )


def check_demo_config(cfg: DemoConfig) -> None:
    """Settings that cannot work, refused before the first stage (the world alone takes minutes)."""
    from lorasae.errors import PreflightError
    from lorasae.world.tiny_model import TinyWorldConfig

    n_layers = TinyWorldConfig().n_layers
    problems = []
    if not 0 <= cfg.layer < n_layers:
        problems.append(
            f"--layer must be in 0 … {n_layers - 1} (the built-in model has {n_layers} layers), got {cfg.layer}"
        )
    for name in ("sae_tokens", "lora_examples", "rank"):
        if getattr(cfg, name) < 1:
            problems.append(f"--{name} must be ≥ 1, got {getattr(cfg, name)}")
    if any(r < 1 for r in cfg.ranks) or any(k < 1 for k in cfg.sweep_k):
        problems.append("--ranks and --sweep_k must be ≥ 1")
    if any(not 1 <= c <= 100 for c in cfg.checkpoints):
        problems.append("--checkpoints are percentages in 1 … 100")
    if problems:
        raise PreflightError("Invalid demo settings:\n  " + "\n  ".join(problems))


def run_demo(cfg: DemoConfig) -> None:
    from lorasae.layer_spec import format_layers
    from lorasae.lora.config import TrainLoraConfig
    from lorasae.lora.run import main_many as train_lora_many
    from lorasae.lora.run import plan_runs
    from lorasae.model_defaults import default_k
    from lorasae.models import model_shape
    from lorasae.train.config import TrainSaeConfig
    from lorasae.train.sae_trainer import train_sae
    from lorasae.world.tiny_model import ensure_tiny_model

    check_demo_config(cfg)
    stages = Stages(total=9, record=paths.root() / "data" / "demo_stages.json")
    model = "tiny"
    stages.run(
        "built-in world", (paths.tiny_model_root() / "tiny" / "world.json").exists(), ensure_tiny_model
    )
    print(_world_summary(), flush=True)
    shape = model_shape(model)
    k_main = default_k(shape.d_model)
    ks = sorted({k_main, *cfg.sweep_k})

    def sae_config(**changes) -> TrainSaeConfig:
        base = TrainSaeConfig(
            device=cfg.device,
            model_type=model,
            layer=cfg.layer,
            num_train_tokens=cfg.sae_tokens,
            seed=cfg.seed,
            overwrite=cfg.force,  # --force retrains; without it an SAE made otherwise is refused, not replaced
        )
        return dataclasses.replace(base, **changes)

    def sae_done(kind: str, k: int) -> bool:
        return not cfg.force and (paths.sae_dir(model, kind, 8, k, cfg.layer) / "cfg.json").exists()

    # The extra-k SAEs first: every SAE run writes data/TopK/*/tiny/normal_SAE.json, and the timing figure
    # must show the main SAE's curve.
    def sweep_saes() -> None:
        for k in ks:
            if k != k_main and not sae_done("normal", k):
                train_sae(sae_config(k=k, eval_every_pct=SWEEP_EVAL_EVERY_PCT))

    stages.run(
        f"TopK SAEs for the L0 sweep (k = {ks})",
        all(sae_done("normal", k) for k in ks if k != k_main),
        sweep_saes,
    )
    stages.run(
        f"TopK SAE (k={k_main}, {cfg.sae_tokens:,} tokens, checkpoints every 10%)",
        sae_done("normal", k_main) and paths.sae_curve_path("val_loss", model, "normal").exists(),
        lambda: train_sae(sae_config(k=k_main)),
    )
    stages.run(
        f"e2e SAE (k={k_main}, {cfg.sae_tokens:,} tokens)",
        sae_done("e2e", k_main),
        lambda: train_sae(sae_config(k=k_main, e2e=True)),
    )

    n_layers = shape.n_layers

    def lora_base() -> TrainLoraConfig:
        return TrainLoraConfig(
            device=cfg.device,
            model_type=model,
            sae_layer=str(cfg.layer),
            rank=cfg.rank,
            num_train_examples=cfg.lora_examples,
            k=k_main,
            expansion_factor=8,
            checkpoint_percent=100,
            save_model=True,  # the eval commands of README use these adapters
            skip_existing=not cfg.force,
            seed=cfg.seed,
            progress=False,
        )

    def lora_done(run: TrainLoraConfig) -> bool:
        return all(p.done() for p in plan_runs(run))

    def lora_stage(title: str, runs: list[TrainLoraConfig]) -> None:
        todo = [run for run in runs if cfg.force or not lora_done(run)]
        stages.run(title, not todo, lambda: train_lora_many(todo))

    def lora(**changes) -> TrainLoraConfig:
        return dataclasses.replace(lora_base(), **changes)

    lora_stage(
        f"LoRA (rank {cfg.rank}) from TopK checkpoints {list(cfg.checkpoints)} %",
        [lora(checkpoint_percent=pct) for pct in cfg.checkpoints],
    )
    lora_stage(
        f"LoRA for each SAE k = {ks} at each rank {list(cfg.ranks)}",
        [lora(k=k, rank=r, eval_every=cfg.lora_examples) for k in ks for r in cfg.ranks],
    )
    after = list(range(cfg.layer + 1, n_layers))
    if not after:
        print(f"(the SAE is at the last layer {cfg.layer}: no one-layer LoRA runs after it)")
    lora_stage(
        f"LoRA on one layer at a time after the SAE (layers {after})",
        [lora(LoRA_layers=str(layer), eval_every=cfg.lora_examples) for layer in after],
    )
    lora_stage(
        f"LoRA rank 1 on the layers after the SAE ({format_layers(after)}; the steering eval's adapter)",
        [lora(LoRA_layers="after", rank=1, eval_every=cfg.lora_examples)] if after else [],
    )
    figures: dict[str, list[Path]] = {}
    stages.run("figures", False, lambda: figures.update(_figures(model)))
    from lorasae.report import print_results_table

    print_results_table(model, speedup=True)
    print(
        f"demo finished in {stages.elapsed_minutes():.1f} min (from scratch: {stages.recorded_minutes():.1f} "
        f"min, the sum of the stage times); figures in {paths.plots_dir()}"
    )
    if cfg.readme:
        timing = next((f for f in figures.get("timing", []) if f.suffix == ".png"), None)
        readme = update_readme(paths.root(), model, stages.recorded_minutes(), stages.machine(), timing)
        if readme is not None:
            print(f"results block of {readme} rewritten")


def _machine() -> str:
    import os
    import platform

    import torch

    return f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def _figures(model: str) -> dict[str, list[Path]]:
    from lorasae.plotting import plot_all

    out = plot_all(None, model)
    for name, files in out.items():
        for file in files:
            if file.suffix == ".png":
                print(f"  {name}: {file}")
    return out


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.errors`)."""
    run_demo(parse(DemoConfig, argv))


if __name__ == "__main__":
    sys.exit(cli())
