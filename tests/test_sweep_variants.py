"""A sweep with other settings than another sweep of the same model writes its own manifest, shard config
and figures (issue 25): after `make demo`, README's `sweep.py ... --ranks 16 --rank 16` found every run
done but replaced the demo's `data/sweeps/tiny.json` and redrew `plots/tiny_scaling.png` from it. The
manifest, its shard config and the figures drawn from it now carry the sweep's settings off sweep.py's
defaults (`sweep_variant`); the demo's figures stage asks for the demo's own manifest.

The sweeps here run on our_world's SAEs without training (the trainer is replaced; the LoRA results are
fake rows of `data/results.csv`), so only the manifest and the figures are made."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from lorasae.core import paths
from lorasae.core.cli import parse
from lorasae.core.records import read_record, record_path
from lorasae.demo import main as demo_main
from lorasae.results import find_sweep_manifest, load_sweep_manifest
from lorasae.sweep.config import SweepConfig, sweep_variant
from lorasae.sweep.run import main
from lorasae.sweep.shards import shard_config_path
from tests import test_sweep
from tests.test_plotting import L_BASE, _row, write_results_csv

our_world = test_sweep.our_world

# our_world's SAEs as (tag, SAE layer, width, k): the L0, width and layer sweeps around expansion 4, k 4
SAES = [
    ("expansion_4_L0_2", 1, 128, 2),
    ("expansion_4_L0_4", 1, 128, 4),
    ("expansion_4_L0_8", 1, 128, 8),
    ("expansion_2_L0_4", 1, 64, 4),
    ("expansion_8_L0_4", 1, 256, 4),
    ("layer_0__expansion_4_L0_4", 0, 128, 4),
    ("layer_2__expansion_4_L0_4", 2, 128, 4),
]


@pytest.fixture
def no_training(our_world: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """our_world with fake LoRA results of every sweep SAE (ranks 1 and 4 on all layers, rank 2 on layer 2
    alone) and a trainer that trains nothing."""
    import lorasae.lora.run

    monkeypatch.setattr(lorasae.lora.run, "main_many", lambda configs: None)
    rows = []
    for i, (tag, layer, width, k) in enumerate(SAES):
        l_sae = L_BASE + 1.0 / k + 0.1 * layer
        for j, rank in enumerate((1, 4)):
            l_lora = l_sae - 0.1 * (1 + j) * width / 256
            rows.append(
                _row("model", tag, str(layer), "0-2", rank, 3, width, k, None, l_sae, l_lora, 2 * i + j)
            )
    rows.append(
        _row("model", "expansion_4_L0_4", "1", "2", 2, 3, 128, 4, None, L_BASE + 0.25, L_BASE + 0.2, 30)
    )
    write_results_csv(our_world, rows)
    return our_world


def argv(world: Path, *axes: str) -> list[str]:
    """test_sweep's sweep over our_world, on `axes` (default: its l0, width, layer and single_layer)."""
    base = test_sweep.our_argv(world)
    return base[: base.index("--axes")] + ["--axes", *axes] if axes else base


def outputs(world: Path, variant: str) -> list[Path]:
    """The manifest of the sweep with settings `variant`, and the figures drawn from it, with their records."""
    manifest = paths.sweep_manifest("model", variant=variant)
    figures = [world / "plots" / f"{stem}__{variant}.{ext}" for stem in ("model_scaling", "model_single_layer_lora") for ext in ("png", "pdf")]  # fmt: skip
    return [f for path in (manifest, *figures) for f in (path, record_path(path))]


def state(files: list[Path]) -> dict[Path, tuple[bytes, int]]:
    return {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}


def test_a_sweep_names_only_its_settings_off_the_defaults_and_its_shards_share_them(tmp_path: Path) -> None:
    assert sweep_variant(SweepConfig()) == ""  # the paper's sweep keeps the original names
    assert sweep_variant(SweepConfig(device="cpu", shard="1/4", progress=False, model_type="tiny")) == ""
    readme = parse(SweepConfig, "--catalog ours --model_type tiny --ranks 16 --rank 16 --num_train_examples 160 --eval_every 160".split())  # fmt: skip
    variant = sweep_variant(readme)
    assert variant.startswith("catalog-ours_ranks-16_rank-16_n-160_every-160_h-")
    assert paths.sweep_manifest("tiny", variant=variant).name == f"tiny__{variant}.json"
    assert shard_config_path(readme).name == f"tiny__{variant}.config.json"
    other = parse(SweepConfig, "--catalog ours --model_type tiny --ranks 16 --rank 64".split())
    assert sweep_variant(other) != variant
    # a shard reads the sweep's config with its own --shard: the same variant, so the same manifest
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps(dataclasses.asdict(readme)))
    shard = parse(SweepConfig, ["--config_file", str(config), "--shard", "1/2"])
    assert sweep_variant(shard) == variant and shard_config_path(shard) == shard_config_path(readme)


def test_two_sweeps_of_one_model_with_other_settings_keep_two_manifests_and_two_sets_of_figures(
    no_training: Path,
) -> None:
    first, second = parse(SweepConfig, argv(no_training)), parse(SweepConfig, argv(no_training, "l0", "single_layer"))  # fmt: skip
    main(first)
    mine = outputs(no_training, sweep_variant(first))
    before = state(mine)
    main(second)
    assert state(mine) == before  # neither its manifest nor its figures were replaced
    theirs = outputs(no_training, sweep_variant(second))
    assert all(f.is_file() for f in theirs) and not set(mine) & set(theirs)
    assert mine[2].read_bytes() != theirs[2].read_bytes()  # the scaling figures differ: no width, layer
    assert set(load_sweep_manifest(None, "model", sweep_variant(first))["axes"]) == {"l0", "width", "layer", "single_layer"}  # fmt: skip
    assert set(load_sweep_manifest(None, "model", sweep_variant(second))["axes"]) == {"l0", "single_layer"}
    assert not (no_training / "plots" / "model_scaling.png").exists()  # the default names: no default sweep


def test_a_rerun_with_the_same_settings_or_a_shard_of_it_leaves_manifest_record_and_figures_untouched(
    no_training: Path, tmp_path: Path
) -> None:
    cfg = parse(SweepConfig, argv(no_training))
    main(cfg)
    mine = outputs(no_training, sweep_variant(cfg))
    before = state(mine)
    main(cfg)
    assert state(mine) == before
    config = shard_config_path(cfg)
    config.write_text(json.dumps(dataclasses.asdict(cfg)))
    main(parse(SweepConfig, ["--config_file", str(config), "--shard", "1/2"]))
    assert state(mine) == before
    assert sorted(p.name for p in config.parent.iterdir()) == sorted(
        p.name for p in (config, mine[0], mine[1])
    )  # one manifest, its record and its shard config


def test_the_demo_figures_stage_draws_from_the_demo_manifest_even_when_a_newer_sweep_exists(
    no_training: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = parse(SweepConfig, argv(no_training) + ["--figures", "false"])  # the demo draws in its own stage
    main(demo)
    drawn = demo_main._figures("model", sweep_variant(demo))
    figures = [*drawn["scaling"], *drawn["single_layer"]]
    assert [f.name for f in figures] == ["model_scaling.png", "model_scaling.pdf", "model_single_layer_lora.png", "model_single_layer_lora.pdf"]  # fmt: skip
    before = state(figures)
    old = paths.sweep_manifest("model", variant=sweep_variant(demo))
    os.utime(old, (1e9, 1e9))  # the demo's manifest is the older one
    other = parse(SweepConfig, argv(no_training, "l0", "single_layer"))
    main(other)
    capsys.readouterr()
    assert find_sweep_manifest(None, "model").variant == sweep_variant(other)  # the newest
    assert "using" in capsys.readouterr().out  # pick_result says which it took
    demo_main._figures("model", sweep_variant(demo))
    assert state(figures) == before
    theirs = no_training / "plots" / f"model_scaling__{sweep_variant(other)}.png"
    assert theirs.read_bytes() != figures[0].read_bytes()


def test_a_sweep_named_plain_and_its_shards_write_the_plain_names_and_record_its_settings(
    no_training: Path,
) -> None:
    # the demo's sweep is named '' (`--sweep_name`): README's `data/sweeps/tiny.json`, `tiny.config.json`
    cfg = parse(SweepConfig, argv(no_training) + ["--sweep_name", ""])
    assert sweep_variant(cfg) == "" and shard_config_path(cfg) == paths.sweep_config("model")
    main(cfg)
    plain = paths.sweep_manifest("model")
    assert read_record(plain).get("variant") == "" and read_record(plain).get("settings")["ranks"] == [1, 4]
    assert (no_training / "plots" / "model_scaling.png").is_file()
    before = state([plain, record_path(plain)])
    config = shard_config_path(cfg)
    config.write_text(json.dumps(dataclasses.asdict(cfg)))  # as run_shards writes it
    shard = parse(SweepConfig, ["--config_file", str(config), "--shard", "1/2"])
    assert sweep_variant(shard) == ""  # the name travels in the shard config
    main(shard)
    assert state([plain, record_path(plain)]) == before
    # the same name with other settings but the same SAEs: the manifest stays, its record names the new ones
    main(parse(SweepConfig, argv(no_training) + ["--sweep_name", "", "--ranks", "1"]))
    assert json.loads(plain.read_text()) == json.loads(before[plain][0])
    assert read_record(plain).get("settings")["ranks"] == [1]


def test_a_sweep_name_that_cannot_stand_in_a_file_name_is_refused() -> None:
    for bad in ("../x", "a/b", "a__b", "_a", "a b"):
        with pytest.raises(ValueError, match="--sweep_name"):
            sweep_variant(SweepConfig(sweep_name=bad))
    assert sweep_variant(SweepConfig(sweep_name="my-run_2.5")) == "my-run_2.5"
