"""An identical rerun changes nothing (issue 25): an eval whose result exists with a run record of the same
run (same SAE and weights, adapter, model and settings) is skipped with one line saying so, through one
shared rule (`lorasae.evals.identity.done_already`); `--overwrite` redoes it; other settings write a new
slot. Figures are a pure function of their content and are written only when their bytes change, each with
a run record naming its inputs; an all-done sweep leaves its manifest's record alone."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_saebench_e2e import _args, saved_setup  # noqa: F401  (saved_setup: a fixture)
from test_steering_runner import setup  # noqa: F401  (a fixture)

from lorasae.core.records import read_record, record_path, write_record
from lorasae.evals.identity import done_already
from lorasae.plotting._common import new_figure, save_figure
from lorasae.saebench.run import run

pytestmark = pytest.mark.usefixtures("one_thread")

SKIP_LINE = "exists for these settings (run record"


def _state(path: Path) -> tuple[bytes, int, bytes, int]:
    """A result's bytes and mtime, and its run record's."""
    record = record_path(path)
    return path.read_bytes(), path.stat().st_mtime_ns, record.read_bytes(), record.stat().st_mtime_ns


def test_the_skip_rule_needs_the_same_identity_and_yields_to_overwrite(tmp_path, capsys):
    path = tmp_path / "result.json"
    identity = {"model": "m", "sae_sources": ["s"], "settings": {"seed": 1, "device": "cpu"}, "variant": ""}
    assert not done_already("eval", path, identity)  # no result yet
    path.write_text("{}")
    assert not done_already("eval", path, identity)  # a result without a record: not known to be this run
    write_record(path, "test_result", identity)
    assert done_already("eval", path, identity)
    line = capsys.readouterr().out.strip()
    assert (
        line.startswith("eval: ") and SKIP_LINE in line and line.endswith("skipped — --overwrite redoes it")
    )
    assert str(record_path(path).name) in line
    assert not done_already("eval", path, identity, overwrite=True)
    assert not done_already("eval", path, {**identity, "settings": {"seed": 2, "device": "cpu"}})
    assert not done_already("eval", path, {**identity, "sae_sources": ["other"]})
    # settings that change no number (the device, --overwrite itself) do not make it another run
    assert done_already("eval", path, {**identity, "settings": {"seed": 1, "device": "cuda", "overwrite": 1}})


def test_an_identical_saebench_rerun_is_skipped_and_overwrite_redoes_it(
    saved_setup,  # noqa: F811
    out_root,
    capsys,
):
    args = _args(saved_setup, "base", "core")
    path = run(args)["core"]
    before = _state(path)
    capsys.readouterr()
    time.sleep(0.01)
    assert run(args)["core"] == path
    assert _state(path) == before  # bytes and mtimes of the result and its record untouched
    out = capsys.readouterr().out
    assert f"core: {path.relative_to(out_root)} {SKIP_LINE}" in out and "--overwrite redoes it" in out

    run(replace(args, overwrite=True))
    assert _state(path)[3] != before[3]  # redone: its record written again
    assert SKIP_LINE not in capsys.readouterr().out

    redone = path.read_bytes()
    other = run(replace(args, llm_batch_size=4))["core"]  # another setting: a new slot beside it
    assert other != path and other.is_file() and path.read_bytes() == redone


def test_identical_steering_reruns_are_skipped_and_overwrite_redoes_them(setup, out_root, capsys):  # noqa: F811
    from lorasae.steering.alpha_sweep import tune_alpha
    from lorasae.steering.final_eval import run_steering_eval
    from lorasae.steering.latent import resolve_latent
    from lorasae.steering.positives_file import make_positive_examples
    from lorasae.steering.scripts import EvalConfig, TuneConfig

    ctx, args, corpus = setup
    resolve_latent(ctx, 5)
    make_positive_examples(ctx, str(corpus), from_corpus=True, num_examples=12, batch_size=8)
    common = {
        k: getattr(args, k) for k in ("model", "negatives", "num_negatives", "batch_size", "max_length")
    }
    tune = TuneConfig(**common, grid="0.5,2")
    evaluate = EvalConfig(**common)
    tune_alpha(ctx, tune, grid=[0.5, 2.0])
    first = run_steering_eval(ctx, evaluate, per_set_histograms=False)
    results = out_root / "eval/steering/results"
    (alpha_file,) = [p for p in results.glob("latent_5_alpha*.json") if not p.name.endswith(".run.json")]
    (result,) = results.glob("*/latent_5.json")
    before = {p: _state(p) for p in (alpha_file, result)}
    capsys.readouterr()

    tune_alpha(ctx, tune, grid=[0.5, 2.0])
    again = run_steering_eval(ctx, evaluate, per_set_histograms=False)
    assert {p: _state(p) for p in before} == before and again["summary"] == first["summary"]
    out = capsys.readouterr().out
    assert f"tune_alpha: {alpha_file.relative_to(out_root)} {SKIP_LINE}" in out
    assert f"steering: {result.relative_to(out_root)} {SKIP_LINE}" in out

    run_steering_eval(ctx, replace(evaluate, overwrite=True), per_set_histograms=False)
    assert _state(result)[3] != before[result][3]
    redone = _state(result)
    run_steering_eval(
        ctx, replace(evaluate, confidence=0.8), 0.5, 0.8, per_set_histograms=False
    )  # other settings
    (other,) = [p for p in results.glob("*/latent_5.json") if p != result]  # a new slot beside it
    assert read_record(other).get("settings")["alpha"] == 0.5 and _state(result) == redone


def test_an_identical_interp_rerun_is_skipped_and_its_figures_are_named_after_the_result(
    world_model, out_root, capsys
):

    from eval_setup_helpers import save_default_sae_and_adapter

    from lorasae.core.cli import parse
    from lorasae.core.paths import plots_dir
    from lorasae.interp.run import InterpArgs, run_interp

    save_default_sae_and_adapter(world_model)
    argv = ["--model", str(world_model), "--device", "cpu", "--dataset", "builtin", "--num_tokens", "256"]
    argv += ["--ctx_len", "64", "--batch_size", "4", "--resamples", "50", "--progress", "false"]
    out = run_interp(parse(InterpArgs, argv))
    figures = sorted(plots_dir().glob(f"{world_model.name}_interp_*"))
    stems = {p.name.split(".")[0] for p in figures}
    assert stems == {f"{world_model.name}_interp_{kind}__{out.parent.name}__{out.stem}" for kind in
                     ("layers", "token_loss")}  # fmt: skip
    pngs = [p for p in figures if p.suffix == ".png"]
    for png in pngs:  # each figure's record names the result it was drawn from
        inputs = read_record(png).get("inputs")
        assert [i["path"] for i in inputs] == [str(out.relative_to(out_root))]
    before = {p: _state(p) for p in [out, *pngs]}
    capsys.readouterr()
    assert run_interp(parse(InterpArgs, argv)) == out
    assert {p: _state(p) for p in before} == before
    assert f"interp: {out.relative_to(out_root)} {SKIP_LINE}" in capsys.readouterr().out
    run_interp(parse(InterpArgs, [*argv, "--overwrite"]))
    assert _state(out)[3] != before[out][3]


def _figure(title: str):
    fig, ax = new_figure()
    ax.plot([0, 1, 2], [1, 3, 2], "o-")
    ax.set_title(title)
    return fig


def test_a_figure_saved_twice_has_the_same_bytes_and_is_not_touched_again(tmp_path):
    png, pdf = save_figure(_figure("a"), tmp_path, "fig")
    first = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (png, pdf)}
    time.sleep(0.01)
    save_figure(_figure("a"), tmp_path, "fig")  # a new figure object of the same content
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (png, pdf)} == first
    assert b"CreationDate" not in pdf.read_bytes()
    save_figure(_figure("b"), tmp_path, "fig")  # other content: both rewritten
    assert all(p.read_bytes() != first[p][0] for p in (png, pdf))


def test_a_figure_record_names_its_inputs_and_their_digests(out_root, tmp_path):
    from lorasae.core.fingerprint import file_digest

    data = out_root / "data" / "a.json"
    data.parent.mkdir(parents=True)
    data.write_text(json.dumps({"x": 1}))
    png, pdf = save_figure(_figure("a"), out_root / "plots", "fig", inputs=[data])
    for path in (png, pdf):
        record = read_record(path)
        assert record.kind == "figure" and record.get("figure") == path.name
        assert record.get("inputs") == [{"path": "data/a.json", "digest": file_digest(data)}]
    stamp = record_path(png).stat().st_mtime_ns
    save_figure(_figure("a"), out_root / "plots", "fig", inputs=[data])  # unchanged: record kept
    assert record_path(png).stat().st_mtime_ns == stamp


def test_the_saebench_comparison_figure_is_byte_stable_and_names_its_results(out_root, tmp_path):
    from lorasae.saebench.comparison import comparison_figure

    base, peft = tmp_path / "base.json", tmp_path / "peft.json"
    results = {
        "base": {"core": {"eval_result_metrics": {"sparsity": {"l0": 4.0}}}},
        "peft": {"core": {"eval_result_metrics": {"sparsity": {"l0": 5.0}}}},
    }
    base.write_text("{}")
    peft.write_text("{}")
    paths = comparison_figure(results, out_root / "plots" / "saebench_x.v1", [base, peft])
    assert [p.name for p in paths] == ["saebench_x.v1.png", "saebench_x.v1.pdf"]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}
    comparison_figure(results, out_root / "plots" / "saebench_x.v1", [base, peft])
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths} == before
    assert len(read_record(paths[0]).get("inputs")) == 2


def test_an_all_done_sweep_leaves_its_manifest_and_record_untouched(out_root, monkeypatch):
    from lorasae.core import paths
    from lorasae.sweep import run as sweep_run

    manifest = {"model": "tiny", "axes": {"k": ["expansion_8_L0_4"]}}
    path = paths.sweep_manifest("tiny")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2))
    write_record(path, "sweep_manifest", {"manifest": manifest})
    before = _state(path)
    assert sweep_run.unchanged_manifest(path, manifest)
    assert not sweep_run.unchanged_manifest(path, {**manifest, "axes": {"k": []}})
    assert _state(path) == before


def test_an_identical_get_peft_dict_rerun_is_skipped_and_overwrite_or_another_dtype_redoes_it(
    saved_setup,  # noqa: F811
    out_root,
    capsys,
):
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "eval" / "SAE-Bench" / "get_peft_dict.py"
    spec = importlib.util.spec_from_file_location("get_peft_dict_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--model", saved_setup["model"], "--adapter", saved_setup["adapter"]]
    assert module.cli(argv) in (0, None)
    (path,) = (out_root / "eval" / "SAE-Bench" / "peft_dicts").glob("*.pt")
    record = read_record(path)
    assert record.kind == "peft_dict" and record.get("settings") == {"dtype": "float32"}
    assert record.get("adapter_weights_digests") and record.get("model_weights_digest")
    before = _state(path)
    capsys.readouterr()
    time.sleep(0.01)
    assert module.cli(argv) in (0, None)
    assert _state(path) == before  # bytes and mtimes of the state dict and its record untouched
    out = capsys.readouterr().out
    assert f"peft dict: {path.relative_to(out_root)} {SKIP_LINE}" in out and "--overwrite redoes it" in out

    assert module.cli([*argv, "--overwrite"]) in (0, None)
    assert _state(path)[3] != before[3] and SKIP_LINE not in capsys.readouterr().out  # redone
    assert module.cli([*argv, "--dtype", "bfloat16"]) in (0, None)  # another merge: not skipped
    assert SKIP_LINE not in capsys.readouterr().out
    assert read_record(path).get("settings") == {"dtype": "bfloat16"}
