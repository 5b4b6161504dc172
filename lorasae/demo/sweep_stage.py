"""The demo's scaling-sweep stage: its `sweep.py` settings (`sweep_config`, pinned against README's sweep
line by tests/test_demo_sweep_command.py; `cfg` is `lorasae.demo.main.DemoConfig`, which imports this
module), how many shards run at once, and running them."""

from __future__ import annotations

from typing import Any

SIZE_MODELS = ("tiny-s", "tiny")
"""The built-in sizes of the model-size sweep, smallest first (`lorasae.world.sizes`); `tiny` is the main."""


def sweep_shards(cfg: Any, runs: int | None) -> int:
    """How many sweep shards run at once: `--sweep_shards`, else one per CPU core (1 on a GPU); never more
    than the runs left."""
    from lorasae.core.runtime import available_cpus, parse_device

    shards = cfg.sweep_shards or (available_cpus() if parse_device(cfg.device).type == "cpu" else 1)
    return max(1, min(shards, runs)) if runs is not None else max(1, shards)


def run_sweep(sweep, shards: int) -> None:
    if shards == 1:
        from lorasae.sweep.run import main

        main(sweep)
    else:
        from lorasae.sweep.shards import run_shards

        run_shards(sweep, shards)


def sweep_config(cfg: Any, model: str, k: int, widths: list[int], layers: list[int]):
    """The demo's sweep: `sweep.py --catalog ours` over the demo's SAEs, named '' (`--sweep_name`): its
    manifest, shard config and figures take the plain names README shows, while a sweep.py run with other
    settings (README's post-demo line) gets its own (`lorasae.sweep.config.sweep_variant`)."""
    from lorasae.model.load import model_shape
    from lorasae.sweep.config import SweepConfig

    d_model = model_shape(model).d_model
    return SweepConfig(
        device=cfg.device,
        model_type=model,
        seed=cfg.seed,
        catalog="ours",
        axes=["l0", "width", "layer", "model_size", "single_layer"],
        models=list(SIZE_MODELS),
        layer=cfg.layer,
        width=str(8 * d_model),
        l0=float(k),
        widths=[str(e * d_model) for e in widths],
        layers=layers,
        ranks=list(cfg.ranks),
        rank=cfg.rank,
        num_train_examples=cfg.lora_examples,
        eval_every=cfg.lora_examples,
        save_model=True,
        progress=False,
        figures=False,
        overwrite=cfg.force,
        sweep_name="",  # README's names: data/sweeps/<model>.json and .config.json, plots/<model>_scaling.png
    )
