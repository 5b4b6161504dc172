"""Run identity of evals (issue 25): an eval uses an adapter only with the SAE weights it was trained on
(from the adapter's run record), legacy adapters get an inferred record once and are accepted with a note,
and eval results have one slot per SAE (and adapter) / per setting, never one per model."""

from __future__ import annotations

import json
import os

import pytest
from test_run_identity_lora import argv, make_world, save_sae

from lorasae.core.cli import parse
from lorasae.core.paths import sae_dir
from lorasae.core.records import read_record, write_deferred
from lorasae.evals.identity import result_slot
from lorasae.lmeval.comparison import comparison_table
from lorasae.lmeval.config import BenchmarkConfig
from lorasae.lmeval.layout import ALL_FOUR, results_path, settings_variant
from lorasae.lmeval.pairing import resolve_pairing
from lorasae.lmeval.plan import plan_run
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.run import main as train_lora
from lorasae.saebench.args import results_dir
from lorasae.saebench.comparison import load_results
from lorasae.store import AdapterFilter, external_ref, find_adapter, resolve_adapter
from lorasae.store.adapter_records import AdapterPairingError, check_pairing

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def world(out_root):
    return make_world(out_root)


def _trained_adapter(world):
    (summary,) = train_lora(parse(TrainLoraConfig, argv(world)))
    return summary.run.adapter_path()


def test_an_eval_refuses_an_adapter_trained_for_an_sae_retrained_since(world, capsys):
    adapter = _trained_adapter(world)
    model = str(world / "model")
    sae = str(sae_dir("model", "normal", 4, 4, 1))
    ref = external_ref(sae, 1)
    capsys.readouterr()
    assert resolve_adapter(model, ref) == adapter  # found by its record, paired: no note
    assert "note:" not in capsys.readouterr().out
    save_sae(seed=1)  # the SAE retrained after the adapter was trained
    for attempt in (
        lambda: resolve_adapter(model, ref),  # SAE-Bench, steering, interp
        lambda: resolve_adapter(model, ref, str(adapter)),  # the same with --adapter
        lambda: resolve_pairing(  # the benchmarks
            cfg := parse(BenchmarkConfig, ["--model", model, "--all_four", "--adapter", str(adapter)]),
            plan_run(cfg),
            n_layers=3,
        ),
    ):
        with pytest.raises(AdapterPairingError) as err:
            attempt()
        message = str(err.value)
        assert "\n" not in message and str(adapter) in message and sae in message and "retrain" in message


def test_a_legacy_adapter_gets_an_inferred_record_once_and_is_accepted_with_a_note(world, capsys):
    sae = sae_dir("model", "normal", 4, 4, 1)
    legacy = world / "saved_models" / "model" / "expansion_4_L0_4" / "peft_0-2" / "rank_8"
    legacy.mkdir(parents=True)
    (legacy / "adapter_config.json").write_text(json.dumps({"r": 8, "layers_to_transform": [0, 1, 2]}))
    (world / "data").mkdir()
    (world / "data" / "results.csv").write_text(
        f"model,sae_tag,sae_source,sae_layers,lora_layers,rank\nmodel,expansion_4_L0_4,{sae},1,0-2,8\n"
    )
    note = check_pairing(legacy, [str(sae)])
    assert note.startswith("note:") and str(legacy) in note and "inferred" in note
    assert read_record(legacy) is None  # written only when the command using it finishes
    assert write_deferred() == [legacy / "run.json"]
    record = read_record(legacy)
    assert record.inferred and record.get("rank") == 8 and record.get("sae_sources") == [str(sae)]
    assert record.get("sae_weights_digests")[0] and record.get("lora_layers") == [0, 1, 2]
    first = (legacy / "run.json").read_bytes()
    os.utime(legacy / "run.json", (1, 1))
    check_pairing(legacy, [str(sae)])  # inferred once: not written again
    assert write_deferred() == []
    assert (legacy / "run.json").read_bytes() == first and (legacy / "run.json").stat().st_mtime == 1
    save_sae(seed=1)  # retrained after the adapter's first use: caught by the inferred digest
    with pytest.raises(AdapterPairingError, match="retrain"):
        check_pairing(legacy, [str(sae)])


def test_saebench_results_have_one_slot_per_sae_and_adapter(out_root, tmp_path):
    adapters = []
    for i in range(2):  # the same folder names in two places: two adapters, two slots
        folder = tmp_path / f"copy{i}" / "peft_0-2" / "rank_4"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 32 + i}))
        (folder / "adapter_model.safetensors").write_bytes(bytes([i]) * 8)
        adapters.append(folder)
        (folder / "run.json").write_text(
            json.dumps({"kind": "lora_adapter", "identity": {"rank": 4, "copy": i}})
        )
    slots = {
        result_slot("expansion_8_L0_4"),
        result_slot("expansion_8_L0_8"),
        result_slot("expansion_8_L0_4", adapters[0]),
        result_slot("expansion_8_L0_4", adapters[1]),
    }
    assert len(slots) == 4 and result_slot("expansion_8_L0_4") == "expansion_8_L0_4"

    def write(kind: str, slot: str, value: float) -> None:
        folder = results_dir("tiny", kind, None, slot)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "core.json").write_text(json.dumps({"v": value}))

    write("base", "expansion_8_L0_4", 1.0)
    write("peft", result_slot("expansion_8_L0_4", adapters[0]), 2.0)
    write("base", "expansion_8_L0_8", 3.0)  # another SAE's result: its own slot, the first one kept
    assert load_results("tiny", sae_tag="expansion_8_L0_4") == {
        "base": {"core": {"v": 1.0}},
        "peft": {"core": {"v": 2.0}},
    }
    assert load_results("tiny") == {"base": {"core": {"v": 3.0}}}  # the SAE evaluated last
    assert (
        results_dir("tiny", "base") / "expansion_8_L0_4" / "core.json"
        != results_dir("tiny", "base", None, "expansion_8_L0_8") / "core.json"
    )


def test_a_benchmark_limit_run_never_replaces_the_full_result(out_root):
    def record(limit, acc):
        config = {"limit": limit, "num_fewshot": None, "max_length": None, "tasks": ["arc_easy"]}
        return {"results": {"arc_easy": {"acc,none": acc}}, "config": config | {"sae_fingerprint": None}}

    full = {c: results_path("tiny", c) for c in ALL_FOUR}
    limited = {c: results_path("tiny", c, variant=settings_variant(limit=50)) for c in ALL_FOUR}
    assert set(full.values()).isdisjoint(limited.values())
    assert full[ALL_FOUR[0]].name == "tiny_base_no_sae.json"  # the original's name for a full run
    assert limited[ALL_FOUR[0]].name == "tiny_base_no_sae__limit-50.json"
    assert len({settings_variant(50), settings_variant(None, 5), settings_variant(None, None, 512), ""}) == 4
    for combo in ALL_FOUR:
        full[combo].parent.mkdir(parents=True, exist_ok=True)
        full[combo].write_text(json.dumps(record(None, 0.61)))
    before = {c: p.read_bytes() for c, p in full.items()}
    for combo in ALL_FOUR:
        limited[combo].write_text(json.dumps(record(50, 0.99)))
    assert {c: p.read_bytes() for c, p in full.items()} == before
    # the reader's one rule (`eval_identity.pick_result`): the default settings first, though older
    assert "0.61" in comparison_table("tiny") and "0.99" not in comparison_table("tiny")
    assert "0.99" in comparison_table("tiny", variant="limit-50")
    for combo in ALL_FOUR:
        full[combo].unlink()
    assert "0.99" in comparison_table("tiny")  # no default run: the newest


def test_the_finder_prefers_the_adapter_trained_on_the_current_sae_weights(world):
    model = str(world / "model")
    sae = str(sae_dir("model", "normal", 4, 4, 1))
    (old,) = train_lora(parse(TrainLoraConfig, argv(world, "--rank", "8")))  # higher rank, old SAE
    save_sae(seed=1)
    (new,) = train_lora(parse(TrainLoraConfig, argv(world, "--num_train_examples", "6")))  # retrained SAE
    ref = external_ref(sae, 1)
    assert resolve_adapter(model, ref) == new.run.adapter_path()  # not the higher-rank adapter of the old SAE
    tag = new.run.sae_tag
    assert find_adapter(model, tag, num_examples=4) == old.run.adapter_path()  # the example count, by record
    assert find_adapter(model, tag, num_examples=6) == new.run.adapter_path()
    with pytest.raises(AdapterPairingError):  # asked for the old SAE's adapter by rank: refused
        resolve_adapter(model, ref, want=AdapterFilter(rank=8))


def test_dark_matter_refuses_an_adapter_trained_for_an_sae_retrained_since(world):
    from lorasae.darkmatter.cli import DarkMatterArgs
    from lorasae.darkmatter.cli import resolve_adapter as dark_matter_adapter

    adapter = _trained_adapter(world)
    sae = str(sae_dir("model", "normal", 4, 4, 1))
    args = DarkMatterArgs(
        model=str(world / "model"), layer=1, rank=4, lora_span="0-2", train_lora_missing=False
    )
    assert dark_matter_adapter(args, sae) == str(adapter)
    save_sae(seed=1)
    with pytest.raises(AdapterPairingError, match="retrain"):
        dark_matter_adapter(args, sae)
    with pytest.raises(AdapterPairingError, match="retrain"):  # given with --lora
        dark_matter_adapter(DarkMatterArgs(model=str(world / "model"), layer=1, lora=str(adapter)), sae)
