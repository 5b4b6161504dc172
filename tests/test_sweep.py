"""sweep.py: the Gemma Scope plan (from sae-lens's bundled directory, offline), sharding, errors, and a
whole sweep over our own SAEs on a tiny random model: outputs, manifest, figures, and a rerun that skips."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import make_char_tokenizer, make_tiny_model

from lorasae.core import paths
from lorasae.core.cli import parse
from lorasae.core.records import read_record
from lorasae.plotting import improvement_table
from lorasae.plotting._common import width_label
from lorasae.results import load_results_csv, load_sweep_manifest
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.sweep.catalog import Catalog, SaeEntry, gemma_scope_catalog, our_catalog
from lorasae.sweep.config import SweepConfig, parse_width, sweep_variant
from lorasae.sweep.plan import build_plan, evenly_spaced, shard
from lorasae.sweep.run import is_done, main

SCOPE_2B = "gemma-scope-2b-pt-res"


@pytest.fixture(scope="module")
def scope_dir():
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return get_pretrained_saes_directory()


def scope_plan(*argv: str):
    cfg = parse(SweepConfig, list(argv))
    return cfg, build_plan(cfg, gemma_scope_catalog)


def test_parse_width():
    assert parse_width("16k") == 16384 and parse_width("1m") == 2**20 and parse_width("131k") == 131072
    assert parse_width("1024") == 1024 and parse_width(96) == 96


def test_gemma_scope_catalog_matches_the_sae_lens_directory(scope_dir):
    catalog = gemma_scope_catalog("gemma")
    ids = set(scope_dir[SCOPE_2B].saes_map)
    assert catalog.n_layers == 26 and len(catalog.entries) > 200
    for entry in catalog.entries:
        release, sae_id = entry.source.split("/", 1)
        assert release == SCOPE_2B and sae_id in ids
        assert sae_id == f"layer_{entry.layer}/width_{width_label(entry.width)}/average_l0_{entry.l0:g}"
    canonical = set(scope_dir[f"{SCOPE_2B}-canonical"].saes_map.values())
    assert {e.source.split("/", 1)[1] for e in catalog.entries if e.canonical} == canonical & ids
    assert catalog.pick(12, 16384).source == f"{SCOPE_2B}/layer_12/width_16k/average_l0_82"
    assert catalog.pick(12, 16384, l0=30).l0 == 22  # |22-30| < |41-30|
    with pytest.raises(LookupError, match="Gemma Scope.*--catalog ours"):
        gemma_scope_catalog("llama")


def test_default_plan_is_the_papers_grid():
    cfg, plan = scope_plan()
    base = plan.defaults["gemma"]
    assert base.source == f"{SCOPE_2B}/layer_12/width_16k/average_l0_82"
    l0s = sorted(e.l0 for e in plan.axis_saes["l0"])
    assert l0s == [22, 41, 82, 176, 445]
    widths = [e.width for e in plan.axis_saes["width"]]
    assert widths == sorted(widths) and len(widths) == 7 and widths[0] == 16384 and widths[-1] == 2**20
    # canonical where Gemma Scope has one at layer 12, else the L0 nearest the default SAE's 82
    assert all(e.layer == 12 for e in plan.axis_saes["width"])
    assert [e.l0 for e in plan.axis_saes["width"]] == [82, 76, 72, 67, 121, 115, 107]
    layers = [e.layer for e in plan.axis_saes["layer"]]
    assert 12 in layers and len(layers) == 9 and layers[0] == 0 and layers[-1] == 25
    assert all(e.width == 16384 and e.canonical for e in plan.axis_saes["layer"])
    big = plan.defaults["gemma-9b"]
    assert big.source == "gemma-scope-9b-pt-res/layer_20/width_131k/average_l0_62"  # SPEC's 9B SAE
    assert [e.model for e in plan.axis_saes["model_size"]] == ["gemma", "gemma-9b"]

    # the default SAE is shared by four sweeps but trained once per rank
    keys = [run.key for run in plan.runs]
    assert len(keys) == len(set(keys))
    base_runs = [r for r in plan.runs if r.sae == base and r.lora_layers == "all"]
    assert sorted(r.rank for r in base_runs) == [1, 4, 16, 64]
    assert all(set(r.axes) == {"l0", "width", "layer", "model_size"} for r in base_runs)
    singles = [r for r in plan.runs if r.axes == ["single_layer"]]
    assert [r.lora_layer_indices() for r in singles] == [[i] for i in range(13, 26)]
    assert all(r.rank == 64 and r.sae == base for r in singles)
    distinct_saes = {
        e.source for axis in ("l0", "width", "layer", "model_size") for e in plan.axis_saes[axis]
    }
    assert len(plan.runs) == 4 * len(distinct_saes) + 13


def test_flags_move_the_default_sae_and_pick_sweeps():
    _, plan = scope_plan("--layer", "5", "--width", "65k", "--l0", "40", "--axes", "l0", "layer",
                         "--layers", "3", "5", "7", "--ranks", "16")  # fmt: skip
    base = plan.defaults["gemma"]
    assert (base.layer, base.width) == (5, 65536) and not base.canonical
    assert [e.layer for e in plan.axis_saes["layer"]] == [3, 5, 7]
    assert plan.axis_saes["layer"][1] == base  # the sweep holds the chosen SAE, not the canonical one
    assert {r.rank for r in plan.runs} == {16} and set(plan.axis_saes) == {"l0", "layer"}


def test_missing_points_are_noted_not_fatal():
    _, plan = scope_plan("--axes", "width", "--layer", "3")
    assert [e.width for e in plan.axis_saes["width"]] == [16384, 65536]  # Gemma Scope 2B layer 3
    assert not plan.notes
    _, plan = scope_plan("--axes", "width", "--widths", "16k", "1m", "--layer", "3")
    assert any("width 1048576" in n for n in plan.notes) and len(plan.axis_saes["width"]) == 1


def test_shards_partition_the_plan():
    _, plan = scope_plan()
    parts = [shard(plan.runs, i, 3) for i in range(3)]
    assert sorted(len(p) for p in parts)[-1] - sorted(len(p) for p in parts)[0] <= 1
    assert sorted(id(r) for p in parts for r in p) == sorted(id(r) for r in plan.runs)


def test_bad_flags_say_what_to_do():
    with pytest.raises(ValueError, match="Unknown sweep axes"):
        scope_plan("--axes", "depth")
    with pytest.raises(ValueError, match="--shard"):
        scope_plan("--shard", "4/4")
    with pytest.raises(ValueError, match="--shard must look like"):
        scope_plan("--shard", "half")
    with pytest.raises(LookupError, match="No gemma SAE at layer 12 with width 4096"):
        scope_plan("--width", "4k")


def test_evenly_spaced_keeps_the_default():
    assert evenly_spaced(range(26), 12, 9) == [0, 3, 6, 9, 12, 16, 19, 22, 25]
    assert evenly_spaced([1, 2, 3], 2, 9) == [1, 2, 3]


def test_catalog_pick_without_canonical_uses_near_then_middle():
    entries = [SaeEntry("m", f"s{k}", 1, 64, float(k)) for k in (2, 4, 8)]
    catalog = Catalog("m", 3, entries)
    assert catalog.pick(1, 64).l0 == 4 and catalog.pick(1, 64, near=7).l0 == 8
    assert catalog.pick(1, 64, l0=3).l0 == 2 and catalog.pick(2, 64) is None


def test_dry_run_prints_the_plan_and_trains_nothing(out_root, capsys):
    main(parse(SweepConfig, ["--dry_run", "--axes", "l0", "--ranks", "4"]))
    out = capsys.readouterr().out
    assert "layer_12/width_16k/average_l0_445" in out and "5 runs planned" in out and "5 to train" in out
    assert not (out_root / "data").exists()


# --- a whole sweep on our own SAEs ------------------------------------------------------------------------

WORDS = "the a cat dog sat on mat ran far and then slept under big red tree house".split()
D = 32


@pytest.fixture
def our_world(out_root):
    """A saved 3-layer random Llama, a text file, and random final SAEs: layer 1 at expansion 4 with
    k 2/4/8 and at expansions 2 and 8 with k 4; layers 0 and 2 at expansion 4, k 4."""
    folder = out_root / "model"
    make_tiny_model("llama", n_layers=3, d=D).save_pretrained(folder)
    make_char_tokenizer().save_pretrained(folder)
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(300)]
    (out_root / "text.txt").write_text("\n\n".join(docs))
    saes = [(1, 4, 2), (1, 4, 4), (1, 4, 8), (1, 2, 4), (1, 8, 4), (0, 4, 4), (2, 4, 4)]
    for i, (layer, expansion, k) in enumerate(saes):
        torch.manual_seed(i)
        sae = TopKSAE(SaeConfig.from_expansion(D, expansion, k, hook_layer=layer))
        sae.save(paths.sae_dir("model", "normal", expansion, k, layer))
    # a checkpoint is not a final SAE: the catalog leaves it out
    TopKSAE(SaeConfig.from_expansion(D, 4, 4, hook_layer=1)).save(
        paths.sae_dir("model", "normal", 4, 4, 1, 50)
    )
    return out_root


def our_argv(world, *extra: str) -> list[str]:
    return [
        "--catalog", "ours", "--device", "cpu", "--model", str(world / "model"),
        "--dataset", str(world / "text.txt"), "--ctx_len", "32", "--num_val_tokens", "96",
        "--num_train_examples", "3", "--ranks", "1", "4", "--rank", "2", "--progress", "false",
        "--axes", "l0", "width", "layer", "single_layer", *extra,
    ]  # fmt: skip


def test_our_catalog_lists_final_saes(our_world):
    catalog = our_catalog(str(our_world / "model"))
    assert catalog.n_layers == 3 and len(catalog.entries) == 7
    assert all("pct" not in e.source for e in catalog.entries)
    assert catalog.widths(1) == [64, 128, 256] and catalog.layers(128) == [0, 1, 2]


def test_our_catalog_without_saes_says_to_train(out_root):
    with pytest.raises(LookupError, match="train_sae.py"):
        our_catalog("nothing-here", n_layers=2)


def test_sweep_over_our_saes_end_to_end(our_world, capsys):
    cfg = parse(SweepConfig, our_argv(our_world))
    plan = main(cfg)
    out = capsys.readouterr().out
    base = plan.defaults[str(our_world / "model")]
    assert (base.layer, base.width, base.l0) == (1, 128, 4)
    # l0: 3 SAEs, width: +2, layer: +2 → 7 SAEs x 2 ranks, and one single-layer run (layer 2) at rank 2
    assert len(plan.runs) == 15 and all(is_done(cfg, r) for r in plan.runs)
    df = load_results_csv(None)
    assert len(df) == 15 and set(df["rank"]) == {1.0, 2.0, 4.0}
    assert df[["L_base", "L_SAE", "L_LoRA"]].notna().all().all()  # (a random model: no sign to expect)
    assert sorted(df["sae_layers"].value_counts().items()) == [("0", 2), ("1", 11), ("2", 2)]

    variant = sweep_variant(cfg)  # the sweep's settings off sweep.py's defaults name its manifest
    manifest = load_sweep_manifest(None, "model")
    record = read_record(paths.sweep_manifest("model", variant=variant))  # the run record: what made it
    assert record.kind == "sweep_manifest" and record.get("manifest") == manifest
    assert record.get("variant") == variant
    assert record.get("settings")["ranks"] == [1, 4] and record.get("settings")["rank"] == 2
    assert "device" not in record.get("settings") and record.get("model_weights_digest")
    assert manifest["axes"]["width"] == ["expansion_2_L0_4", "expansion_4_L0_4", "expansion_8_L0_4"]
    assert manifest["axes"]["l0"] == ["expansion_4_L0_2", "expansion_4_L0_4", "expansion_4_L0_8"]
    assert manifest["axes"]["single_layer"] == ["expansion_4_L0_4"]
    # one family at three layers: the layers off the default one are named in the tag, so no run of the
    # layer sweep overwrites another's files
    assert manifest["axes"]["layer"] == [
        "layer_0__expansion_4_L0_4",
        "expansion_4_L0_4",
        "layer_2__expansion_4_L0_4",
    ]
    # the width figure takes the manifest's SAE at width 128 (k=4), not another L0 of the same width
    table = improvement_table(df, "width", sae_tags=manifest["axes"]["width"])
    assert sorted(set(table["x"])) == [64, 128, 256] and len(table) == 6
    assert set(table[table["x"] == 128]["sae_tag"]) == {"expansion_4_L0_4"}
    for name in ("model_scaling", "model_single_layer_lora"):
        assert (our_world / "plots" / f"{name}__{variant}.png").stat().st_size > 0
    assert "% gap closed" in out and "15 runs planned" in out

    # a rerun trains nothing and leaves the table as it was
    main(cfg)
    out = capsys.readouterr().out
    assert "15 done already, 0 to train" in out and len(load_results_csv(None)) == 15
    assert json.loads(paths.sweep_manifest("model", variant=variant).read_text()) == manifest


def test_model_size_over_our_catalog_leaves_out_models_without_saes(our_world, capsys):
    """README's `sweep.py --catalog ours --model_type tiny ...` keeps the default axes, model_size included:
    the default other models (gemma, gemma-9b) have no SAEs of ours, and are left out with a note."""
    argv = our_argv(our_world)
    argv = argv[: argv.index("--axes")] + ["--axes", "l0", "model_size", "--dry_run", "true"]
    plan = main(parse(SweepConfig, argv))
    out = capsys.readouterr().out
    assert plan.axis_saes["model_size"] == [] and plan.axis_saes["l0"]
    assert "model-size sweep: gemma left out" in out and "model-size sweep: gemma-9b left out" in out


def test_a_failing_sweep_shard_is_named_with_its_output_and_rerun_command(out_root, capsys):
    """run_shards (the demo's parallel sweep): each shard's lines come prefixed; a shard that fails raises
    with its last lines and the command that reruns it alone."""
    from lorasae.core.errors import LorasaeError
    from lorasae.sweep.shards import run_shards

    with pytest.raises(LorasaeError) as err:  # no SAEs of ours under this root: every shard exits 1
        run_shards(SweepConfig(model_type="tiny", catalog="ours", device="cpu"), 2, threads=1)
    message = str(err.value)
    assert "sweep shard 0/2 failed (exit code 1)" in message and "No SAEs under" in message
    assert "python -m lorasae.sweep --config_file" in message and message.rstrip().endswith("--shard 0/2")
    out = capsys.readouterr().out
    assert "[shard 0/2] error: No SAEs" in out and "[shard 1/2] error: No SAEs" in out
