"""`make demo`: the paper's experiments and every evaluation end to end on the built-in model, on the CPU,
with no network.

Stages (each skipped when its outputs exist, so a rerun is cheap; `--force` reruns everything):
 1. the built-in world (corpus, tokenizer, pretrained tiny model)
 2. the sweep SAEs: TopK at the other k of the L0 sweep, at the other widths, at the other layers
 3. the main TopK SAE with its 10 %…100 % checkpoints, and 4. an e2e SAE on the same token budget
 5. LoRA from several TopK checkpoints (the timing experiment)
 6. the scaling sweeps (`sweep.py --catalog ours`: L0, width and layer at every rank, one layer at a time)
 7. a rank-1 LoRA on the layers after the SAE (the steering eval's adapter); every run saves its adapter,
    so the eval commands of README work after the demo
 8. SAEs at two layers adapted jointly by one LoRA (the multiple-SAE experiment)
 9. SAE-Bench on the base and the LoRA-merged model, 10. steering, 11. the benchmarks, 12. the
    interpretability analysis, 13. Dark Matter of SAEs, 14. latent dashboards (static HTML)
15. every figure; then the tables (every LoRA run, the e2e speed-up, multi-SAE, SAE-Bench, steering,
    benchmarks, interpretability), what it showed against the paper, all in plots/demo/RESULTS.md (README's
    snapshot is rewritten only with `--update_readme`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from lorasae.core import paths
from lorasae.core.budget import DEMO_CURVE_EVERY_PCT, DEMO_SAE_TOKENS
from lorasae.core.cli import field, parse, parse_count
from lorasae.core.errors import main_guard
from lorasae.demo.readme import update_readme, write_results_page
from lorasae.demo.stages import Stages
from lorasae.demo.sweep_stage import SIZE_MODELS, run_sweep, sweep_config, sweep_shards
from lorasae.evals.shape import EvalSizes

# Only the main TopK SAE, the e2e SAE and the LoRA runs from checkpoints draw curves (the timing figure and
# the speed-up); the sweep runs report their final CE, so they validate only before and after training and
# the sweep SAEs keep no intermediate checkpoints (validation does not change training: same final SAEs).
SWEEP_EVAL_EVERY_PCT = 100.0
TIMING_CURVE_POINTS = 5
"""Validation points (after the one before training) of each LoRA run from a TopK checkpoint: the timing
figure's curves (train_lora.py's default for 160 sequences validates 10 times, half the run's time)."""

BASE_STAGES = 8
"""The world, the sweep SAEs, the main SAE, the e2e SAE, LoRA from checkpoints, the scaling sweeps, the
rank-1 `after` LoRA, and the figures."""
EVAL_LORA_STAGES = 1
"""The multiple-SAE LoRA, run only with the evals."""


@dataclass
class DemoConfig:
    """Run the paper's pipeline on the built-in model."""

    device: str = "cpu"
    """Device for every stage."""

    layer: int = 1
    """Decoder layer of the main SAE (the built-in model has 4)."""

    widths: tuple[int, ...] = field(default=(2, 4, 8, 16), alias=["--expansions"])
    """Expansion factors of the width sweep (at the main SAE's layer and k): --expansions, as
    eval/dark_matter/run.py (--widths, sweep.py's widths in latents, kept here as an alias)."""

    layers: list[int] | None = field(default=None, alias=["--sweep_layers"])
    """Layers of the layer sweep (expansion 8, the main k): --sweep_layers (--layers, train_sae.py's
    crosscoder sources, kept here as an alias). Default: every layer of the model."""

    multi_layers: tuple[int, ...] = (1, 2)
    """SAE layers spliced together in the multiple-SAE experiment (each also runs alone in the layer sweep)."""

    evals: bool = field(default=True, alias=["--run_evals"])
    """Run the evaluation stages (SAE-Bench, steering, benchmarks, interpretability, Dark Matter):
    --run_evals/--norun_evals (--evals/--noevals kept as aliases; --evals names evals in run_eval.py)."""

    sizes: EvalSizes = dataclasses.field(default_factory=EvalSizes)
    """How much of each evaluation the demo runs."""

    sae_tokens: int = field(default=DEMO_SAE_TOKENS, type=parse_count)
    """Training tokens of each SAE (TopK and e2e get the same budget)."""

    lora_examples: int = field(default=160, type=parse_count)
    """Training sequences of each LoRA run."""

    rank: int = 16
    """LoRA rank of the timing experiment and the one-layer runs."""

    ranks: tuple[int, ...] = (1, 16)
    """LoRA ranks of the scaling sweeps (each on the final TopK SAE of every k, width and layer). Two, to keep
    the demo within 12 minutes: rank 4 cost 42 s; the scale study (`eval/scale_study/run.py`) varies rank/d
    from 3 to 25 percent on the main SAE."""

    checkpoints: tuple[int, ...] = (20, 50, 80, 100)
    """TopK SAE checkpoints (percent of training) to adapt with LoRA."""

    sweep_k: tuple[int, ...] = (2, 8)
    """Extra SAE sparsities k for the L0 sweep (the main SAE's default k is added)."""

    sweep_shards: int | None = None
    """The scaling sweeps' LoRA runs go in this many shards at once (`python -m lorasae.sweep --shard i/n`
    processes, the CPU threads split between them: a small model's LoRA step uses one core), and the
    other LoRA stages' runs in as many processes (`lorasae.lora.parallel`); 1 runs them in this process.
    Default: on the CPU one shard per available core, on a GPU 1."""

    force: bool = False
    """Rerun every stage even when its outputs exist."""

    update_readme: bool = False
    """Maintainers only: also rewrite README.md's results snapshot (between its demo markers) and its
    figures in docs/demo/ (tracked files). Without it the demo writes only plots/demo/RESULTS.md."""

    seed: int = 42
    """Random seed."""


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
    from lorasae.core.errors import PreflightError
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
    if cfg.sweep_shards is not None and cfg.sweep_shards < 1:
        problems.append(f"--sweep_shards must be ≥ 1, got {cfg.sweep_shards}")
    if any(r < 1 for r in cfg.ranks) or any(k < 1 for k in cfg.sweep_k):
        problems.append("--ranks and --sweep_k must be ≥ 1")
    if any(not 1 <= c <= 100 for c in cfg.checkpoints):
        problems.append("--checkpoints are percentages in 1 … 100")
    if problems:
        raise PreflightError("Invalid demo settings:\n  " + "\n  ".join(problems))


def run_demo(cfg: DemoConfig) -> None:
    from lorasae.core.layer_spec import format_layers
    from lorasae.lora.config import TrainLoraConfig
    from lorasae.lora.parallel import run_parallel
    from lorasae.lora.run import plan_runs
    from lorasae.model.defaults import default_k, default_num_val_tokens
    from lorasae.model.load import model_shape
    from lorasae.train.config import TrainSaeConfig
    from lorasae.train.sae_trainer import train_sae
    from lorasae.train.state import curve_path, planned_dir
    from lorasae.world.tiny_model import ensure_tiny_model

    check_demo_config(cfg)
    stages = Stages(total=stage_count(cfg.evals), record=paths.root() / "data" / "demo_stages.json")
    model = "tiny"
    sizes = list(SIZE_MODELS)
    stages.run(
        f"built-in world ({', '.join(sizes)})",
        all((paths.tiny_model_root() / size / "world.json").exists() for size in sizes),
        lambda: [ensure_tiny_model(size=size) for size in sizes],
    )
    print(_world_summary(), flush=True)
    shape = model_shape(model)
    n_layers = shape.n_layers
    k_main = default_k(shape.d_model)
    ks = sorted({k_main, *cfg.sweep_k})
    widths = sorted({8, *cfg.widths})
    layers = sorted(set(cfg.layers if cfg.layers is not None else range(n_layers)) | {cfg.layer})

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

    def sae_done(kind: str, k: int, expansion: int = 8, layer: int | None = None, of: str = model) -> bool:
        """Whether the SAE exists where train_sae.py writes it (its folder names --sae_tokens when not the
        default budget: `train.state.checkpoint_dir`)."""
        layer = cfg.layer if layer is None else layer
        planned = sae_config(model_type=of, k=k, expansion_factor=expansion, layer=layer, e2e=kind == "e2e")
        return not cfg.force and (planned_dir(planned) / "cfg.json").exists()

    # the model-size sweep's other model: its main SAE (same layer, expansion and token budget, its own
    # default k), which the sweep adapts at every rank
    others = [m for m in sizes if m != model]
    other_k = {m: default_k(model_shape(m).d_model) for m in others}

    # (k, expansion, layer) of every sweep SAE other than the main one
    sweep_saes = (
        [(k, 8, cfg.layer) for k in ks if k != k_main]
        + [(k_main, e, cfg.layer) for e in widths if e != 8]
        + [(k_main, 8, layer) for layer in layers if layer != cfg.layer]
    )

    # Every SAE run writes its own curve files (`paths.sae_curve_path`): the sweep SAEs' curves never
    # replace the main SAE's (the timing figure's).
    def train_sweep_saes() -> None:
        from lorasae.model.forward_cache import reused_forwards

        points = [(model, *point) for point in sweep_saes] + [(m, other_k[m], 8, cfg.layer) for m in others]
        with reused_forwards():  # their harvests shared (no figure reads their times; the main SAE's own)
            for of, k, expansion, layer in points:
                if not sae_done("normal", k, expansion, layer, of):
                    train_sae(
                        sae_config(
                            model_type=of,
                            k=k,
                            expansion_factor=expansion,
                            layer=layer,
                            eval_every_pct=SWEEP_EVAL_EVERY_PCT,
                            checkpoint_every_pct=100,
                        )
                    )

    stages.run(
        f"TopK SAEs of the sweeps (k {ks}, expansion {widths}, layers {layers}; {', '.join(others)} k "
        f"{list(other_k.values())})",
        all(sae_done("normal", *point) for point in sweep_saes)
        and all(sae_done("normal", other_k[m], 8, cfg.layer, m) for m in others),
        train_sweep_saes,
    )
    # The timing figure and the e2e speed-up compare these SAEs' curves with LoRA runs validated on every
    # validation token, so their curve points use all of them too (train_sae.py's short-run default
    # validates on fewer).
    full_curve = default_num_val_tokens(shape.d_model)
    main_sae = sae_config(k=k_main, curve_val_tokens=full_curve, eval_every_pct=DEMO_CURVE_EVERY_PCT)
    main_curve = curve_path(
        main_sae.resolved(shape.d_model, shape.max_positions, n_layers), "val_loss", shape
    )
    stages.run(
        f"TopK SAE (k={k_main}, {cfg.sae_tokens:,} tokens, checkpoints every 10%)",
        sae_done("normal", k_main) and main_curve.exists(),
        lambda: train_sae(main_sae),
    )
    stages.run(
        f"e2e SAE (k={k_main}, {cfg.sae_tokens:,} tokens)",
        sae_done("e2e", k_main),
        lambda: train_sae(
            sae_config(k=k_main, e2e=True, curve_val_tokens=full_curve, eval_every_pct=DEMO_CURVE_EVERY_PCT)
        ),
    )

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
            overwrite=cfg.force,  # --force retrains; without it another run's outputs are refused
            seed=cfg.seed,
            progress=False,
        )

    def lora_done(run: TrainLoraConfig) -> bool:
        return all(p.done() for p in plan_runs(run))

    def lora_stage(title: str, runs: list[TrainLoraConfig]) -> None:
        todo = [run for run in runs if cfg.force or not lora_done(run)]
        stages.run(title, not todo, lambda: run_parallel(todo, sweep_shards(cfg, len(todo))))

    def lora(**changes) -> TrainLoraConfig:
        return dataclasses.replace(lora_base(), **changes)

    curve_every = max(1, cfg.lora_examples // TIMING_CURVE_POINTS)
    lora_stage(
        f"LoRA (rank {cfg.rank}) from TopK checkpoints {list(cfg.checkpoints)} %",
        [lora(checkpoint_percent=pct, eval_every=curve_every) for pct in cfg.checkpoints],
    )
    sweep = sweep_config(cfg, model, k_main, widths, layers)
    from lorasae.sweep.config import sweep_variant
    from lorasae.sweep.run import pending_runs, plan_sweep

    pending = [] if cfg.force else pending_runs(sweep, plan_sweep(sweep)[0])
    stages.run(
        f"scaling sweeps: L0, width, layer, model size ({', '.join(sizes)}) at ranks {list(cfg.ranks)}; "
        f"one layer at a time (rank {cfg.rank})",
        not cfg.force and not pending and paths.sweep_manifest(model, variant=sweep_variant(sweep)).exists(),
        lambda: run_sweep(sweep, sweep_shards(cfg, len(pending) if not cfg.force else None)),
    )
    after = list(range(cfg.layer + 1, n_layers))
    lora_stage(
        f"LoRA rank 1 on the layers after the SAE ({format_layers(after)}; the steering eval's adapter)",
        [lora(LoRA_layers="after", rank=1, eval_every=cfg.lora_examples)] if after else [],
    )
    if cfg.evals:
        multi = ",".join(str(layer) for layer in cfg.multi_layers)
        lora_stage(
            f"LoRA (rank {cfg.rank}) with SAEs at layers {multi} at once (each alone: the layer sweep)",
            [lora(sae_layer=multi, eval_every=cfg.lora_examples)],
        )
        _eval_stages(stages, cfg, k_main, n_layers)
    figures: dict[str, list[Path]] = {}
    stages.run("figures", False, lambda: figures.update(_figures(model, sweep_variant(sweep))))
    from lorasae.results.summary import print_results_table

    print_results_table(model, speedup=True)
    if cfg.evals:
        from lorasae.demo.sections import print_eval_tables

        print_eval_tables(model)
    print(
        f"demo finished in {stages.elapsed_minutes():.1f} min (from scratch: {stages.recorded_minutes():.1f} "
        f"min, the sum of the stage times); figures in {paths.plots_dir()}"
    )
    minutes, machine = stages.recorded_minutes(), stages.machine()
    page = write_results_page(paths.root(), model, minutes, machine, figures)
    print(f"results page: {page}")
    if cfg.update_readme:
        readme = update_readme(paths.root(), model, minutes, machine, figures)
        print(
            f"results snapshot of {readme} rewritten" if readme else "README.md has no demo block: left alone"
        )


def _eval_stages(stages: Stages, cfg: DemoConfig, k: int, n_layers: int) -> None:
    """The evaluation stages, as the registry lists them (`lorasae.evals`), each made when its turn
    comes (its `done` check may need the stages before it). On a CPU with two or more cores, the stages
    that may run beside the others (`lorasae.demo.beside`) start first, each in a one-thread process, and
    are waited for at their turn."""
    from lorasae.core.runtime import available_cpus, parse_device
    from lorasae.demo.beside import start_beside
    from lorasae.evals import DemoContext, demo_beside_refs, demo_stage_refs, resolve

    ctx = DemoContext(
        device=cfg.device, layer=cfg.layer, seed=cfg.seed, force=cfg.force, sizes=cfg.sizes, k=k,
        n_layers=n_layers, rank=cfg.rank, sweep_k=tuple(cfg.sweep_k), sae_tokens=cfg.sae_tokens,
        lora_examples=cfg.lora_examples, checkpoints=tuple(cfg.checkpoints),
    )  # fmt: skip
    refs = demo_stage_refs()
    beside = {}
    if parse_device(cfg.device).type == "cpu" and available_cpus() >= 2:
        for ref in refs:
            if ref in demo_beside_refs():
                title, done, _ = resolve(ref)(ctx)
                if not done:
                    print(f"{title}: started in a one-thread process beside the stages before it", flush=True)
                    beside[ref] = (title, start_beside(ref, ctx, title.split(" (")[0]))
    try:
        for ref in refs:
            if ref in beside:
                title, started = beside[ref]
                stages.run(title, False, started.wait)  # its time: how long the demo waited for it here
            else:
                stages.run(*resolve(ref)(ctx))
    finally:
        for _, started in beside.values():
            started.interrupt()  # after an error elsewhere; a finished process is left alone


def stage_count(evals: bool) -> int:
    """The demo's stage count: the training stages and the figures, and with the evals the multiple-SAE
    LoRA and one stage per demo stage of the registry."""
    from lorasae.evals import demo_stage_refs

    return BASE_STAGES + (EVAL_LORA_STAGES + len(demo_stage_refs()) if evals else 0)


def _figures(model: str, sweep_variant: str) -> dict[str, list[Path]]:
    """Every figure, the sweep's from the demo's own sweep manifest (`sweep_variant`, even when a sweep with
    other settings ran since) under README's names (`tiny_scaling.png`, `model_size_scaling.png`)."""
    from lorasae.plotting import plot_all

    out = plot_all(None, model, sweep_variant=sweep_variant, figure_variant="")
    for name, files in out.items():
        for file in files:
            if file.suffix == ".png":
                print(f"  {name}: {file}")
    return out


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    run_demo(parse(DemoConfig, argv, prog="python -m lorasae.demo"))


if __name__ == "__main__":
    sys.exit(cli())
