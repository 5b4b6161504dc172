"""`make demo`: the paper's pipeline end to end on the built-in model, on the CPU, with no network.

Stages (each skipped when its outputs exist, so a rerun is cheap; `--force` reruns everything):
 1. the built-in world (corpus, tokenizer, pretrained tiny model)
 2. a TopK SAE with its 10 %…100 % checkpoints, and 3. an e2e SAE on the same token budget
 4. LoRA from several TopK checkpoints (the timing experiment)
 5. a sweep: LoRA rank, SAE k, and a LoRA on one layer at a time after the SAE
 6. every figure, then a table of L_base, L_SAE, L_LoRA and % of gap closed per run, and the e2e speed-up.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from tabulate import tabulate

from lorasae import paths
from lorasae.cli import parse


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
    """LoRA rank of the timing experiment, the k sweep and the one-layer runs."""

    ranks: tuple[int, ...] = (1, 4, 16, 64)
    """LoRA ranks of the rank sweep (on the final TopK SAE)."""

    checkpoints: tuple[int, ...] = (20, 40, 60, 80, 100)
    """TopK SAE checkpoints (percent of training) to adapt with LoRA."""

    sweep_k: tuple[int, ...] = (2, 8)
    """Extra SAE sparsities k for the L0 sweep (the main SAE's default k is added)."""

    force: bool = False
    """Rerun every stage even when its outputs exist."""

    seed: int = 42
    """Random seed."""


class Stages:
    """Numbered progress lines with wall time; a stage whose outputs exist is skipped."""

    def __init__(self, total: int):
        self.total, self.index, self.start = total, 0, time.perf_counter()

    def run(self, title: str, done: bool, fn: Callable[[], object]) -> None:
        self.index += 1
        prefix = f"[{self.index}/{self.total}] {title}"
        if done:
            print(f"{prefix}: outputs exist, skipped", flush=True)
            return
        print(f"{prefix} ...", flush=True)
        began = time.perf_counter()
        fn()
        print(f"{prefix}: done in {time.perf_counter() - began:.0f} s", flush=True)

    def elapsed_minutes(self) -> float:
        return (time.perf_counter() - self.start) / 60


def _world_summary() -> str:
    from lorasae.world.tiny_model import ensure_tiny_model

    folder = ensure_tiny_model()
    info = json.loads((folder / "world.json").read_text())
    return (
        f"built-in model: validation CE {info['val_ce']:.3f} nats/token vs unigram entropy "
        f"{info['unigram_entropy']:.3f} ({folder})"
    )


def run_demo(cfg: DemoConfig) -> None:
    from lorasae.lora.config import TrainLoraConfig
    from lorasae.lora.run import main as train_lora
    from lorasae.train.config import TrainSaeConfig, default_k
    from lorasae.train.sae_trainer import train_sae
    from lorasae.world.tiny_model import ensure_tiny_model

    stages = Stages(total=8)
    model = "tiny"
    stages.run(
        "built-in world", (paths.tiny_model_root() / "tiny" / "world.json").exists(), ensure_tiny_model
    )
    print(_world_summary(), flush=True)
    from lorasae.models import d_model, load_model

    k_main = default_k(d_model(load_model(model, device="cpu")[0]))
    ks = sorted({k_main, *cfg.sweep_k})

    def sae_config(**changes) -> TrainSaeConfig:
        base = TrainSaeConfig(
            device=cfg.device,
            model_type=model,
            layer=cfg.layer,
            num_train_tokens=cfg.sae_tokens,
            seed=cfg.seed,
        )
        return dataclasses.replace(base, **changes)

    def sae_done(kind: str, k: int) -> bool:
        return not cfg.force and (paths.sae_dir(model, kind, 8, k, cfg.layer) / "cfg.json").exists()

    # The extra-k SAEs first: every SAE run writes data/TopK/*/tiny/normal_SAE.json, and the timing figure
    # must show the main SAE's curve.
    def sweep_saes() -> None:
        for k in ks:
            if k != k_main and not sae_done("normal", k):
                train_sae(sae_config(k=k))

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

    def lora(**changes) -> None:
        base = TrainLoraConfig(
            device=cfg.device,
            model_type=model,
            sae_layer=str(cfg.layer),
            rank=cfg.rank,
            num_train_examples=cfg.lora_examples,
            k=k_main,
            expansion_factor=8,
            checkpoint_percent=100,
            skip_existing=not cfg.force,
            seed=cfg.seed,
            progress=False,
        )
        train_lora(dataclasses.replace(base, **changes))

    stages.run(
        f"LoRA (rank {cfg.rank}) from TopK checkpoints {list(cfg.checkpoints)} %",
        False,
        lambda: [lora(checkpoint_percent=pct) for pct in cfg.checkpoints],
    )
    stages.run(f"LoRA rank sweep {list(cfg.ranks)}", False, lambda: [lora(rank=r) for r in cfg.ranks])
    stages.run(f"LoRA on SAEs with k = {ks}", False, lambda: [lora(k=k) for k in ks])
    from lorasae.models import num_layers

    n_layers = num_layers(load_model(model, device="cpu")[0])
    after = list(range(cfg.layer + 1, n_layers))
    stages.run(
        f"LoRA on one layer at a time after the SAE (layers {after})",
        False,
        lambda: [lora(LoRA_layers=str(layer)) for layer in after],
    )
    stages.run("figures", False, lambda: _figures(model))
    print_summary(model)
    print(f"demo finished in {stages.elapsed_minutes():.1f} min; figures in {paths.plots_dir()}")


def _figures(model: str) -> None:
    from lorasae.plotting import plot_all

    for name, files in plot_all(None, model).items():
        for file in files:
            if file.suffix == ".png":
                print(f"  {name}: {file}")


def print_summary(model: str) -> None:
    """The final table (one row per LoRA run) and the e2e speed-up."""
    from lorasae.results import load_results_csv
    from lorasae.speedup import compute_speedup

    df = load_results_csv(None)
    df = df[df["model"] == model].drop_duplicates(
        subset=["sae_tag", "sae_layers", "lora_layers", "rank", "num_examples"], keep="last"
    )
    rows = [
        [r.sae_tag, r.lora_layers, int(r.rank), r.L_base, r.L_SAE, r.L_LoRA, 100 * r.frac_gap_closed]
        for r in df.itertuples()
    ]
    headers = ["SAE", "LoRA layers", "rank", "L_base", "L_SAE", "L_LoRA", "% gap closed"]
    print(tabulate(rows, headers=headers, floatfmt=".4f"))
    try:
        table = compute_speedup(None, model)
    except FileNotFoundError as err:
        print(f"e2e speed-up: not computed ({err})")
        return
    print("\ne2e speed-up (e2e SAE time / (TopK checkpoint time + LoRA time) to reach the same spliced CE):")
    print(tabulate(table, headers="keys", showindex=False, floatfmt=".4g"))


if __name__ == "__main__":
    run_demo(parse(DemoConfig))
