"""The one rule for "the default adapter of an SAE" (`lorasae.store.default_adapter`,
`DEFAULT_ADAPTER_RULE`): every eval's loader picks the same, stated adapter from the run records (completed
runs, trained on the SAE's weights as they are now), steering's rank-1 `after` wish is a filter of the same
rule, an adapter trained on other SAE weights is refused, and each eval states the rule in `--help` and
prints which adapter ran."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lorasae.core.cli import parse
from lorasae.core.fingerprint import weights_digest
from lorasae.core.paths import lora_json_path
from lorasae.core.records import ADAPTER_RECORD_KIND, LORA_RECORD_KIND, write_record
from lorasae.model.defaults import default_sae_layer
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.store import (
    DEFAULT_ADAPTER_RULE,
    AdapterFilter,
    AdapterNotFoundError,
    adapter_line,
    default_adapter,
    external_ref,
)
from lorasae.store.adapter_records import AdapterPairingError
from lorasae.store.adapters import adapter_tags

N_LAYERS = 4
LAYER = default_sae_layer(N_LAYERS)  # 1: the SAE sits on the default layer, so its tag carries no prefix


@pytest.fixture
def shelf(out_root, tmp_path):
    """A 4-layer model, one SAE at layer 1 and a shelf of adapters saved for it (by run records only)."""
    from conftest import make_tiny_model

    model_dir = tmp_path / "shelfmodel"
    make_tiny_model(n_layers=N_LAYERS).save_pretrained(model_dir)
    sae_dir = out_root / "saved_saes" / "shelfmodel" / "expansion_8_L0_4" / f"model.layers.{LAYER}"
    TopKSAE(SaeConfig(32, 256, 4, hook_layer=LAYER)).save(sae_dir)
    ref = external_ref(str(sae_dir), LAYER)
    tag = adapter_tags(ref, LAYER)[0]
    digest = weights_digest(str(sae_dir))
    made: dict[str, Path] = {}

    def adapter(name: str, span: tuple[int, int], rank: int, n: int, *, sae_digest: str | None = digest,
                completed: bool = True, record: bool = True, variant: str = "", tag: str = tag) -> Path:  # fmt: skip
        layers = list(range(span[0], span[1] + 1))
        folder = out_root / "saved_models" / "shelfmodel" / tag / f"peft_{span[0]}-{span[1]}"
        folder /= f"rank_{rank}__{variant}" if variant else f"rank_{rank}"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "layers_to_transform": layers}))
        identity = {
            "model": "shelfmodel", "sae_tag": tag, "lora_layers": layers, "rank": rank,
            "num_train_examples": n, "sae_sources": [str(sae_dir)], "sae_layers": [LAYER],
            "sae_weights_digests": [sae_digest], "settings": {"variant": variant},
        }  # fmt: skip
        if record:
            write_record(folder, ADAPTER_RECORD_KIND, identity)
        if completed:  # the CE_increase JSON and its run record, written last by train_lora.py
            ce = lora_json_path("CE_increase", "shelfmodel", tag, layers, rank, n, out_root, variant)
            ce.parent.mkdir(parents=True, exist_ok=True)
            ce.write_text("{}")
            write_record(ce, LORA_RECORD_KIND, identity)
        os.utime(folder / "adapter_config.json", (1_000 + len(made), 1_000 + len(made)))  # later: newer
        made[name] = folder
        return folder

    adapter("all_r4", (0, 3), 4, 100)
    adapter("all_r8", (0, 3), 8, 100)
    adapter("all_r8_more", (0, 3), 8, 200, variant="n-200")  # the expected default
    adapter("all_r8_older_fewer", (0, 3), 8, 150, variant="n-150")
    adapter("unfinished", (0, 3), 8, 400, completed=False, variant="n-400")
    adapter("other_weights", (0, 3), 64, 400, sae_digest="0" * 16, variant="n-400")
    adapter("recordless", (0, 3), 128, 100, record=False, completed=False)
    adapter("another_sae", (0, 3), 256, 900, sae_digest="1" * 16, tag="expansion_8_L0_8")  # another SAE's
    adapter("after_r1", (LAYER + 1, N_LAYERS - 1), 1, 100)
    adapter("after_r1_fewer", (LAYER + 1, N_LAYERS - 1), 1, 50, variant="n-50")
    adapter("after_r4", (LAYER + 1, N_LAYERS - 1), 4, 100)
    return str(model_dir), ref, made


def _every_loader(model: str, ref, made: dict[str, Path]) -> dict[str, Path | None]:
    """The adapter each eval's own loader picks with no adapter flag (and no filter of its own)."""
    from lorasae.darkmatter.cli import DarkMatterArgs
    from lorasae.darkmatter.cli import resolve_adapter as dark_matter_adapter
    from lorasae.dashboard.run import DashboardArgs, dashboard_adapter
    from lorasae.interp.run import InterpArgs, interp_adapter
    from lorasae.lmeval.config import BenchmarkConfig
    from lorasae.lmeval.pairing import resolve_pairing
    from lorasae.lmeval.plan import plan_run
    from lorasae.saebench.load import default_adapter as saebench_adapter

    bench = parse(BenchmarkConfig, ["--model", model, "--all_four", "--sae_source", ref.source])
    dark = DarkMatterArgs(model=model, layer=LAYER, rank=None)
    return {
        "store": default_adapter(model, ref),
        "SAE-Bench peft": saebench_adapter(model, ref),
        "benchmarks": resolve_pairing(bench, plan_run(bench), N_LAYERS).adapter,
        "dark matter": Path(str(dark_matter_adapter(dark, ref.source))),
        "interp": interp_adapter(InterpArgs(model=model, sae=ref.source, layer=LAYER), ref),
        "dashboards": dashboard_adapter(DashboardArgs(model=model, sae=ref.source, layer=LAYER), ref),
    }


def test_every_eval_loader_picks_the_same_default_adapter_by_the_stated_rule(shelf, capsys):
    model, ref, made = shelf
    picked = _every_loader(model, ref, made)
    # completed runs on these weights: widest span (0-3), then highest rank (8; the rank-64 one was
    # trained on other weights, the rank-128 one has no run record, the 400-example one never finished),
    # then most examples (200 over 150 and 100); the rank-256 adapter of another SAE never counts
    assert picked == dict.fromkeys(picked, made["all_r8_more"])
    printed = capsys.readouterr().out
    assert f"benchmarks: adapter: {made['all_r8_more']} (rank 8; layers 0-3; 200 examples" in printed


def test_steering_rank_one_after_is_a_filter_of_the_same_rule(shelf):
    from lorasae.steering.context import default_adapter as steering_adapter
    from lorasae.steering.context import steering_filter

    model, ref, made = shelf
    want = steering_filter(ref, N_LAYERS)
    assert want == AdapterFilter(rank=1, lora_span=f"{LAYER + 1}-{N_LAYERS - 1}")
    # among the two rank-1 `after` adapters: the one with more examples, though it is the older
    assert steering_adapter(model, ref, N_LAYERS) == made["after_r1"]
    assert default_adapter(model, ref, want) == made["after_r1"]


def test_filters_pick_within_the_rule_and_unfinished_runs_never_count(shelf):
    model, ref, made = shelf
    assert default_adapter(model, ref, AdapterFilter(rank=4)) == made["all_r4"]  # widest span wins
    assert default_adapter(model, ref, AdapterFilter(num_examples=150)) == made["all_r8_older_fewer"]
    with pytest.raises(AdapterNotFoundError, match="1 match but their LoRA run did not complete"):
        default_adapter(model, ref, AdapterFilter(num_examples=400, rank=8))


def test_an_adapter_trained_on_other_sae_weights_is_refused_by_every_loader(shelf):
    from lorasae.darkmatter.cli import DarkMatterArgs
    from lorasae.darkmatter.cli import resolve_adapter as dark_matter_adapter
    from lorasae.interp.run import InterpArgs, interp_adapter
    from lorasae.saebench.load import default_adapter as saebench_adapter
    from lorasae.steering.context import default_adapter as steering_adapter
    from lorasae.store import resolve_adapter

    model, ref, made = shelf
    bad = str(made["other_weights"])
    with pytest.raises(AdapterPairingError, match="trained with other SAE weights"):
        resolve_adapter(model, ref, None, AdapterFilter(rank=64))  # the only rank-64 one: not taken
    for pick in (
        lambda: saebench_adapter(model, ref, bad),
        lambda: steering_adapter(model, ref, N_LAYERS, bad),
        lambda: interp_adapter(InterpArgs(model=model, sae=ref.source, layer=LAYER, adapter=bad), ref),
        lambda: dark_matter_adapter(DarkMatterArgs(model=model, layer=LAYER, lora=bad), ref.source),
    ):
        with pytest.raises(AdapterPairingError, match="trained with other SAE weights"):
            pick()


def test_the_line_an_eval_prints_names_the_adapter_and_its_records_settings(shelf):
    _model, _ref, made = shelf
    line = adapter_line(made["after_r1"], "steering")
    assert line.startswith(f"steering: adapter: {made['after_r1']} (rank 1; layers 2-3; 100 examples; SAE ")
    assert line.endswith("; run record)")
    assert adapter_line(None, "SAE-Bench base") == "SAE-Bench base: adapter: none (base model only)"
    assert "record inferred" in adapter_line(made["recordless"])


def test_every_eval_help_states_the_one_rule(capsys):
    from lorasae.darkmatter.cli import DarkMatterArgs
    from lorasae.dashboard.run import DashboardArgs
    from lorasae.interp.run import InterpArgs
    from lorasae.lmeval.config import BenchmarkConfig
    from lorasae.saebench.args import SaeBenchArgs
    from lorasae.steering.args import SteeringArgs

    for config in (SaeBenchArgs, SteeringArgs, BenchmarkConfig, DarkMatterArgs, InterpArgs, DashboardArgs):
        with pytest.raises(SystemExit):
            parse(config, ["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert DEFAULT_ADAPTER_RULE in text, config.__name__
