"""The store (`lorasae.store`): the read side of `lorasae/core/paths.py`. What `train_sae.py` wrote with default
flags is what every other script picks with no flags; every front end resolves the same SAE and adapter
for the same arguments; ambiguity errors only when the user's own flags are ambiguous; layers and run
tags are settled (and finished runs skipped) before any weights load."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorasae.core import paths
from lorasae.core.cli import parse
from lorasae.lora.outputs import write_run_records
from lorasae.model.load import LayerOutOfRangeError, model_shape
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.sae.sources import SaeNotFoundError, SaeShapeError
from lorasae.store import (
    SaeRef,
    default_adapter,
    external_ref,
    find_sae,
    load_bundle,
    our_sae_runs,
    parse_our_tag,
    run_tag,
    source_layer,
)
from lorasae.store.tags import parse_sae_tag, single_sae_tag

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_TRAIN = ["--num_train_tokens", "2048", "--num_val_tokens", "256", "--eval_every_pct", "50"]
TINY_TRAIN += ["--checkpoint_every_pct", "50"]


@pytest.fixture(scope="module")
def trained(small_world, tmp_path_factory):
    """SAEs written by train_sae.py into a fresh output root: one with default flags, one with --k 2 and
    one at layer 0 (which the defaults must never pick)."""
    from lorasae.train.config import TrainSaeConfig
    from lorasae.train.sae_trainer import train_sae

    root = tmp_path_factory.mktemp("store_root")
    mp = pytest.MonkeyPatch()
    mp.setenv("LORASAE_ROOT", str(root))
    model = str(small_world)
    common = ["--device", "cpu", "--model", model, "--dataset", "builtin", *TINY_TRAIN]
    results = {
        "default": train_sae(parse(TrainSaeConfig, common)),
        "k2": train_sae(parse(TrainSaeConfig, [*common, "--k", "2"])),
        "layer0": train_sae(parse(TrainSaeConfig, [*common, "--layer", "0"])),
    }
    yield model, root, results
    mp.undo()


def _adapter(root: Path, model_key: str, tag: str, span: str, rank: int) -> Path:
    folder = root / "saved_models" / model_key / tag / f"peft_{span}" / f"rank_{rank}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_store_default_is_what_train_sae_wrote_with_default_flags(trained):
    model, _root, results = trained
    default_dir = results["default"].final_dir
    assert default_dir.name == "model.layers.1"  # the small-model default layer, no --layer given
    ref = find_sae(model)
    assert Path(ref.source) == default_dir and ref.layer == 1 and ref.checkpoint_pct is None
    # train_lora.py's runs with no flags: one per checkpoint of the default family, never an ambiguity
    runs = our_sae_runs(model)
    assert [r.checkpoint_pct for r in runs] == [50, 100]
    assert {Path(r.refs[0].source).parent.name for r in runs} == {
        f"{default_dir.parent.name}-50pct",
        f"{default_dir.parent.name}-100pct",
    }
    # the user's own flags pick the other SAEs
    assert Path(find_sae(model, k=2).source) == results["k2"].final_dir
    assert Path(find_sae(model, layer=0).source) == results["layer0"].final_dir


def test_ambiguity_only_when_the_flags_leave_several_non_default_families(trained, tmp_path, monkeypatch):
    model, root, _ = trained
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    folder = tmp_path / "saved_saes" / "tiny" / "normal"
    for tag in ("expansion_8_L0_2", "expansion_8_L0_3"):
        TopKSAE(SaeConfig(32, 256, int(tag[-1]), hook_layer=1)).save(folder / tag / "model.layers.1")
    with pytest.raises(SaeNotFoundError, match="Several normal SAE.*expansion_8_L0_2, expansion_8_L0_3"):
        find_sae(model)
    assert find_sae(model, k=3).tag == "expansion_8_L0_3"
    with pytest.raises(SaeNotFoundError, match="No normal SAE.*k 5"):
        find_sae(model, k=5)
    # train_sae.py's default k (1 for d_model 32) decides once it exists
    TopKSAE(SaeConfig(32, 256, 1, hook_layer=1)).save(folder / "expansion_8_L0_1" / "model.layers.1")
    assert find_sae(model).tag == "expansion_8_L0_1"


def test_every_front_end_resolves_the_same_sae_and_adapter(trained):
    from lorasae.lmeval.config import BenchmarkConfig
    from lorasae.lmeval.pairing import resolve_pairing
    from lorasae.lmeval.plan import plan_run
    from lorasae.saebench.load import default_adapter as saebench_adapter
    from lorasae.steering.context import default_adapter as steering_adapter
    from lorasae.store import resolve_sae

    model, root, results = trained
    n_layers = model_shape(model).n_layers
    ref = find_sae(model)
    family = results["default"].final_dir.parent.name
    # train_lora.py --checkpoint_percent 100 --rank 4 --save_model saves here (all layers)
    adapter = _adapter(root, "tiny", f"{family}-100pct", "0-1", 4)
    assert resolve_sae(model) == ref
    assert default_adapter(model, ref) == adapter
    assert saebench_adapter(model, ref) == adapter
    bench = parse(BenchmarkConfig, ["--model", model, "--all_four"])
    plan = resolve_pairing(bench, plan_run(bench), n_layers)
    assert plan.sae_sources == [(ref.source, ref.layer)] and plan.adapter == adapter
    # an explicit source resolves to the same SAE, whatever front end names it
    explicit = external_ref(ref.source, None)
    assert (explicit.source, explicit.layer, explicit.tag) == (ref.source, ref.layer, ref.tag)
    # the layer-0 SAE (off the default layer: its outputs carry `layer_0__`) and its rank-1 `after`
    # adapter, which steering asks for: every front end agrees on both
    ref0 = find_sae(model, layer=0)
    after = _adapter(root, "tiny", f"layer_0__{family}-100pct", "1-1", 1)
    assert resolve_sae(model, layer=0) == ref0 and Path(ref0.source) == results["layer0"].final_dir
    assert steering_adapter(model, ref0, n_layers) == after == saebench_adapter(model, ref0)
    bench0 = parse(BenchmarkConfig, ["--model", model, "--all_four", "--sae_layer", "0"])
    plan = resolve_pairing(bench0, plan_run(bench0), n_layers)
    assert plan.sae_sources == [(ref0.source, 0)] and plan.adapter == after


def test_default_adapter_is_the_widest_span_then_highest_rank_not_the_newest(tmp_path):
    import os

    from lorasae.store import find_adapter

    made = [
        _adapter(tmp_path, "tiny", "expansion_8_L0_4", span, rank)
        for span, rank in (("0-3", 4), ("0-3", 64), ("0-3", 16), ("2-3", 1), ("2-2", 16))
    ]
    for i, folder in enumerate(made):  # written in this order: the last ones are the newest
        os.utime(folder / "adapter_config.json", (1_000 + i, 1_000 + i))
    assert find_adapter("tiny", "expansion_8_L0_4", base=tmp_path) == made[1]  # 0-3, rank 64
    assert find_adapter("tiny", "expansion_8_L0_4", rank=16, base=tmp_path) == made[2]
    assert find_adapter("tiny", "expansion_8_L0_4", rank=1, base=tmp_path) == made[3]
    assert find_adapter("tiny", "expansion_8_L0_4", lora_span="2-2", base=tmp_path) == made[4]
    # equal span and rank (the final SAE and its 100 % checkpoint): the newest
    twin = _adapter(tmp_path, "tiny", "expansion_8_L0_4-100pct", "0-3", 64)
    os.utime(twin / "adapter_config.json", (2_000, 2_000))
    tags = ["expansion_8_L0_4", "expansion_8_L0_4-100pct"]
    assert find_adapter("tiny", tags, base=tmp_path) == twin
    os.utime(made[1] / "adapter_config.json", (3_000, 3_000))
    assert find_adapter("tiny", tags, base=tmp_path) == made[1]


def test_layer_and_run_tag_are_known_and_finished_runs_skipped_before_loading(trained, monkeypatch):
    import lorasae.lora.run as lora_run
    from lorasae.lora.config import TrainLoraConfig

    model, root, _ = trained

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(lora_run, "load_model", no_loading)
    args = ["--model", model, "--rank", "2", "--num_train_examples", "4", "--checkpoint_percent", "100"]
    cfg = parse(TrainLoraConfig, [*args, "--skip_existing"])
    (planned,) = lora_run.plan_runs(cfg)
    assert planned.run_id is not None and planned.run_id.sae_tag.endswith("-100pct")
    path = planned.run_id.json_path("CE_increase")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    assert lora_run.plan_runs(cfg)[0].status() == "incomplete"  # no completion record: redone
    write_run_records(planned.run_id, planned.identity(), [], {})
    assert lora_run.main(cfg) == []  # skipped: nothing loaded
    with pytest.raises(LayerOutOfRangeError, match="2 decoder layers"):
        lora_run.plan_runs(parse(TrainLoraConfig, [*args, "--sae_layer", "5"]))
    sae = str(find_sae(model).source)
    with pytest.raises(LayerOutOfRangeError, match="2 decoder layers"):
        lora_run.plan_runs(parse(TrainLoraConfig, [*args[:-2], "--sae", sae, "--sae_layer", "5"]))


def test_bundle_checks_the_sae_width(small_world, tmp_path):
    wrong = tmp_path / "wide" / "model.layers.1"
    TopKSAE(SaeConfig(48, 96, 2, hook_layer=1)).save(wrong)
    with pytest.raises(SaeShapeError, match="48-dimensional.*d_model = 32"):
        load_bundle(str(small_world), [external_ref(str(wrong), None)])
    right = tmp_path / "right" / "model.layers.1"
    TopKSAE(SaeConfig(32, 64, 2, hook_layer=1)).save(right)
    bundle = load_bundle(str(small_world), [external_ref(str(right), None)])
    assert bundle.layer == 1 and not any(p.requires_grad for p in bundle.sae.parameters())


def test_tags_round_trip_with_the_writer():
    assert parse_our_tag(paths.sae_tag(8, 4, 30)).__dict__ == {
        "expansion_factor": 8,
        "k": 4,
        "pct": 30,
        "variant": "",
    }
    assert parse_our_tag(paths.sae_tag(16, 64)).family == "expansion_16_L0_64"
    assert parse_our_tag("layer_12_width_16k_average_l0_82") is None
    assert parse_sae_tag("layer_12_width_16k_average_l0_82").width == 16384
    assert single_sae_tag("expansion_8_L0_4", 2, 1) == "layer_2__expansion_8_L0_4"
    assert single_sae_tag("expansion_8_L0_4", 1, 1) == "expansion_8_L0_4"
    assert run_tag(["a", "a"], [1, 2], 1) == "layers_1+2__a"
    assert source_layer("gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82") == 12
    assert SaeRef("x", 3, "t").layer == 3
