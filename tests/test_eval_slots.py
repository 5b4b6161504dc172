"""Eval result slots per settings (issue 25): an eval run with settings off the script's defaults writes
beside the default run, never over it (SAE-Bench, steering, Dark Matter), named by one rule
(`paths.settings_variant`); readers find results through their run records and pick among settings by
one rule (`eval_identity.pick_result`: the default settings first, else the newest, and say which); the
demo's done-checks find the demo's own smaller-size results."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from types import SimpleNamespace

import pytest
from conftest import make_char_tokenizer, make_tiny_model
from test_saebench_e2e import _args, saved_setup  # noqa: F401  (saved_setup: a fixture)
from test_steering_runner import setup  # noqa: F401  (a fixture)

from lorasae.core.paths import (
    dark_matter_dir,
    dark_matter_results_path,
    lora_variant,
    name_variant,
    settings_variant,
    with_variant,
)
from lorasae.core.records import read_record, write_record
from lorasae.core.result_choice import find_result, found, pick_result
from lorasae.evals.shape import EvalSizes
from lorasae.lmeval.layout import settings_variant as benchmark_variant
from lorasae.results import pick_steering_result
from lorasae.saebench.args import SaeBenchArgs, result_variant, results_dir
from lorasae.saebench.comparison import load_results, result_folders
from lorasae.saebench.demo_stage import saebench_stage
from lorasae.saebench.run import run
from lorasae.steering import suite as steering_suite
from lorasae.steering.negatives import negatives_file
from lorasae.steering.suite import steering_done, steering_variant

pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_naming_rule_names_only_the_settings_off_their_defaults():
    defaults = {"n": 100, "size": "auto", "path": None}
    assert settings_variant(defaults, defaults) == ""  # the defaults keep the original names
    assert settings_variant({**defaults, "n": 50}, defaults, {"n": "neg"}) == "neg-50"
    assert settings_variant({**defaults, "n": 50, "size": "full"}, defaults, ignore={"size"}) == "n-50"
    # a value a name cannot hold exactly is shortened, and the whole name then carries a digest of all
    a = settings_variant({**defaults, "path": "/data/a/corpus.txt"}, defaults)
    b = settings_variant({**defaults, "path": "/data/b/corpus.txt"}, defaults)
    assert a != b and a.startswith("path-corpus.txt_h-")
    assert (
        with_variant("latent_5", "") == "latent_5"
        and with_variant("latent_5", "neg-50") == "latent_5__neg-50"
    )
    # the LoRA outputs and the benchmarks name by the same rule as before
    assert lora_variant({"num_train_examples": 300, "lr": 0.001}) == "n-300_lr-0.001"
    assert (
        benchmark_variant(limit=50) == "limit-50"
        and benchmark_variant(None, 5, 512) == "fewshot-5_maxlen-512"
    )
    assert name_variant({"limit": 50.0}, {"limit": "limit"}) == "limit-50.0"


def _result(path, variant: str, stamp: float, **identity):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"variant": variant}))
    write_record(path, "test_result", {"variant": variant, **identity})
    os.utime(path, (stamp, stamp))
    return found(path)


def test_pick_result_takes_the_default_settings_first_else_the_newest_and_says_which(tmp_path, capsys):
    small = _result(tmp_path / "r__neg-50.json", "neg-50", 300)
    default = _result(tmp_path / "r.json", "", 100)
    big = _result(tmp_path / "r__neg-500.json", "neg-500", 200)
    assert pick_result([small, default, big], "results") == default  # older, but the default settings
    out = capsys.readouterr().out
    assert "3 settings" in out and str(default.path) in out and "default settings" in out
    assert pick_result([small, big], "results") == small  # no default: the newest
    assert "the newest" in capsys.readouterr().out
    assert pick_result([small, default, big], "results", variant="neg-500") == big  # asked for: exactly
    assert pick_result([small, default], "results", variant="neg-5") is None
    assert pick_result([default], "results") == default and capsys.readouterr().out == ""  # no choice: silent
    assert find_result(tmp_path, "r", "results", "neg-50") == small.path
    # several files of one variant (the benchmarks' four combinations) are no choice of settings: silent
    same = [_result(tmp_path / f"c{i}__limit-100.json", "limit-100", 400 + i) for i in range(4)]
    assert pick_result(same, "results").variant == "limit-100" and capsys.readouterr().out == ""


def test_saebench_results_of_two_settings_both_survive_and_the_comparison_finds_each(
    saved_setup,  # noqa: F811
    out_root,
    capsys,
):
    demo_size = _args(saved_setup, "base", "core")
    other = replace(demo_size, llm_batch_size=4)
    first = run(demo_size)["core"]
    before = first.read_bytes()
    second = run(other)["core"]
    assert second != first and first.read_bytes() == before  # written beside it, not over it
    for path, args in ((first, demo_size), (second, other)):
        assert read_record(path).get("variant") == result_variant(args) != ""
        assert path.parent.name.endswith(result_variant(args))
    assert "bs-4" in result_variant(other) and "bs-4" not in result_variant(demo_size)
    tag = found(first).record.get("settings")["sae_tag"]
    for path, args in ((first, demo_size), (second, other)):  # asked for by settings: exactly that one
        assert result_folders(saved_setup["model"], sae_tag=tag, variant=result_variant(args)) == {
            "base": path.parent
        }
    capsys.readouterr()
    assert result_folders(saved_setup["model"], sae_tag=tag)["base"] == second.parent  # no default: newest
    assert "using" in capsys.readouterr().out


def test_the_demos_saebench_done_check_finds_its_results_after_a_run_with_other_settings(
    out_root, monkeypatch
):
    import lorasae.store

    monkeypatch.setattr(lorasae.store, "resolve_sae", lambda *a: SimpleNamespace(tag="expansion_8_L0_4"))
    sizes = EvalSizes(saebench_evals="core")

    def write(kind: str, slot: str, variant: str, value: float) -> None:
        path = results_dir("tiny", kind, None, slot) / "core.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"v": value}))
        write_record(
            path, "saebench_result", {"settings": {"sae_tag": "expansion_8_L0_4"}, "variant": variant}
        )

    assert not saebench_stage("cpu", 1, 42, False, sizes)[1]
    write("base", "expansion_8_L0_4__size-full", "size-full", 1.0)  # another size only: not the demo's
    write("peft", "expansion_8_L0_4__peft_0-3_rank_16-abc__size-full", "size-full", 2.0)
    assert not saebench_stage("cpu", 1, 42, False, sizes)[1]
    demo = SaeBenchArgs(model="tiny", evals="core", layer=1)
    assert result_variant(demo) == ""  # the demo runs SAE-Bench at the script's default settings
    write("base", "expansion_8_L0_4", "", 3.0)
    write("peft", "expansion_8_L0_4__peft_0-3_rank_16-abc", "", 4.0)
    assert saebench_stage("cpu", 1, 42, False, sizes)[1]  # a rerun of the demo skips it
    assert load_results("tiny", sae_tag="expansion_8_L0_4") == {
        "base": {"core": {"v": 3.0}},
        "peft": {"core": {"v": 4.0}},
    }
    assert load_results("tiny", variant="size-full") == {
        "base": {"core": {"v": 1.0}},
        "peft": {"core": {"v": 2.0}},
    }


def test_steering_results_of_two_sizes_both_survive_and_the_demo_finds_its_own(
    setup,  # noqa: F811
    out_root,
    monkeypatch,
):
    from lorasae.core.atomic import atomic_write_json
    from lorasae.steering.alpha_sweep import tune_alpha
    from lorasae.steering.final_eval import run_steering_eval
    from lorasae.steering.latent import resolve_latent
    from lorasae.steering.negatives import BUILTIN_STANDINS
    from lorasae.steering.positives_file import make_positive_examples
    from lorasae.steering.scripts import EvalConfig, PositivesConfig, TuneConfig

    ctx, args, corpus = setup  # its negatives: 6 per set, cached under that size
    resolve_latent(ctx, 5)
    make_positive_examples(ctx, str(corpus), from_corpus=True, num_examples=12, batch_size=8)
    for i, name in enumerate(BUILTIN_STANDINS.values()):  # a second size beside the first
        examples = [f"{name} other text {j} with words {i}" for j in range(4)]
        atomic_write_json(negatives_file("builtin", name, 4, 0), {"examples": examples, "requested": 4})
    assert negatives_file("builtin", "law", 6, 0) != negatives_file("builtin", "law", 4, 0)
    assert negatives_file("builtin", "law", 100, 0).name == "law.json"  # the default size: the original name

    common = {k: getattr(args, k) for k in ("model", "negatives", "batch_size", "max_length")}
    written = {}
    for count in (6, 4):
        tune = TuneConfig(**common, num_negatives=count, grid="0.5,2")
        tune_alpha(ctx, tune, grid=[0.5, 2.0])
        evaluate = EvalConfig(**common, num_negatives=count)
        run_steering_eval(ctx, evaluate, per_set_histograms=False)
        (path,) = [
            p for p in (out_root / "eval/steering/results").glob("*/latent_5.json") if p not in written
        ]
        written[path] = path.read_bytes()
        variant = steering_variant(PositivesConfig(**common, num_negatives=count), tune, evaluate)
        assert read_record(path).get("variant") == variant and f"neg-{count}" in variant
        monkeypatch.setattr(steering_suite, "MODEL", ctx.model_name)
        assert steering_done(variant)  # the done-check finds the result of exactly these settings
        assert (out_root / f"eval/steering/distributions/5__{variant}/all.png").is_file()
    assert len(written) == 2 and all(p.read_bytes() == b for p, b in written.items())  # both kept
    alphas = (out_root / "eval/steering/results").glob("latent_5_alpha__*.json")
    assert len([p for p in alphas if not p.name.endswith(".run.json")]) == 2  # a tuning record per size
    assert not steering_done("neg-7")
    assert pick_steering_result(ctx.model_name) == max(written, key=lambda p: p.stat().st_mtime)  # newest


def test_dark_matter_results_are_named_by_their_settings_and_read_by_the_one_rule(out_root, tmp_path):
    from lorasae.darkmatter.cli import DarkMatterArgs, result_variant

    folder = tmp_path / "model"
    make_tiny_model("llama", n_layers=3).save_pretrained(folder)
    make_char_tokenizer().save_pretrained(folder)
    default = DarkMatterArgs(model=str(folder))
    demo = DarkMatterArgs(model=str(folder), layer=1, num_tokens=24_000, ce_chunks=16, device="cpu")
    assert result_variant(default) == ""
    assert result_variant(replace(default, layer=1)) == ""  # the layer the script picks anyway
    assert result_variant(demo) == "tokens-24000_ce-16"
    assert dark_matter_results_path("model", "") == dark_matter_dir("model") / "results.json"
    assert dark_matter_results_path("model", result_variant(demo)).name == "results__tokens-24000_ce-16.json"
    small = _result(dark_matter_results_path("model", result_variant(demo)), result_variant(demo), 200)
    assert find_result(dark_matter_dir("model"), "results", "dm") == small.path
    full = _result(dark_matter_results_path("model", ""), "", 100)
    assert find_result(dark_matter_dir("model"), "results", "dm") == full.path  # the default first
    assert find_result(dark_matter_dir("model"), "results", "dm", result_variant(demo)) == small.path


def test_the_demo_results_page_gets_a_run_record_naming_the_results_it_read(out_root):
    from lorasae.demo.readme import write_page_record

    steering = out_root / "eval/steering/results/sae__adapter-1__neg-50/latent_3.json"
    steering.parent.mkdir(parents=True)
    steering.write_text(json.dumps({"model": "tiny", "deltas": {"base": {"positive": [1.0]}}}))
    write_record(steering, "steering_result", {"variant": "neg-50"})
    dm = _result(dark_matter_results_path("tiny", "tokens-24000"), "tokens-24000", 100)
    page = out_root / "plots/demo/RESULTS.md"
    page.parent.mkdir(parents=True)
    page.write_text("# results\n")
    write_page_record(page, out_root, "tiny")
    record = read_record(page)
    assert record.kind == "demo_results_page" and record.get("model") == "tiny"
    assert record.get("inputs") == {
        "eval/steering/results/sae__adapter-1__neg-50/latent_3.json": read_record(steering).identity_digest,
        "data/dark_matter/tiny/results__tokens-24000.json": dm.record.identity_digest,
    }
    assert sorted(map(str, record.parents)) == sorted([str(read_record(steering).path), str(dm.record.path)])
