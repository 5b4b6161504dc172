"""Eval records name local inputs relative to the output root (issue 25): SAE-Bench's and the interp
analysis's `--dataset` (and SAE-Bench's `--forget_corpus` and merged state dict) are recorded root-relative
when they lie inside the root, whether typed absolute or relative to the current folder, so a moved root
still finds its results done; a hub name (not an existing local path) is recorded as typed."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from test_saebench_e2e import saved_setup  # noqa: F401  (a fixture)

from lorasae.core.records import read_record
from lorasae.evals.identity import portable_settings
from lorasae.saebench.args import SaeBenchArgs, result_variant

pytestmark = pytest.mark.usefixtures("one_thread")

SKIP_LINE = "exists for these settings (run record"


def _move(root: Path, monkeypatch) -> Path:
    """Move the whole output root elsewhere and point LORASAE_ROOT at its new place."""
    moved = root.with_name(root.name + "-moved")
    shutil.move(str(root), str(moved))
    monkeypatch.setenv("LORASAE_ROOT", str(moved))
    return moved


def _script(path: str, argv: list[str]) -> None:
    """A script (`path` under the repository) through its error boundary, which writes at the command's end
    the records inferred for record-less inputs (as a real run does)."""
    script = Path(__file__).resolve().parent.parent / path
    spec = importlib.util.spec_from_file_location(script.stem + "_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.cli(argv) in (0, None)


def _run_eval(argv: list[str]) -> None:
    _script("eval/SAE-Bench/run_eval.py", argv)


def _argv(setup: dict, kind: str, dataset: str) -> list[str]:
    return [
        "--device", "cpu", "--model", setup["model"], "--model_variant", kind, "--sae", setup["sae"],
        "--adapter", setup["adapter"], "--evals", "core", "--dataset", dataset, "--labelled_data", "builtin",
    ]  # fmt: skip


def test_local_paths_are_recorded_root_relative_and_hub_names_as_typed(out_root, monkeypatch):
    (out_root / "texts").mkdir()
    (out_root / "texts" / "a.txt").write_text("some text")
    monkeypatch.chdir(out_root / "texts")
    typed = {"dataset": "a.txt", "forget_corpus": str(out_root / "texts" / "a.txt"), "seed": 1}
    assert portable_settings(typed) == {"dataset": "texts/a.txt", "forget_corpus": "texts/a.txt", "seed": 1}
    hub = {"dataset": "Skylion007/openwebtext", "forget_corpus": None}
    assert portable_settings(hub) == hub
    # the slot's settings variant is named from the recorded form too
    absolute = SaeBenchArgs(model="tiny", dataset=str(out_root / "texts" / "a.txt"))
    assert result_variant(absolute) == result_variant(SaeBenchArgs(model="tiny", dataset="a.txt")) != ""


def test_saebench_results_are_found_done_after_the_root_moved(
    saved_setup,  # noqa: F811
    out_root,
    monkeypatch,
    capsys,
):
    for kind in ("base", "peft"):
        _run_eval(_argv(saved_setup, kind, saved_setup["corpus"]))  # typed absolute
    results = sorted((out_root / "eval" / "SAE-Bench" / "results").glob("*/*/core.json"))
    assert len(results) == 2
    for path in results:
        assert read_record(path).get("settings")["dataset"] == "corpus.txt"
    before = {p.relative_to(out_root): p.read_bytes() for p in results}

    moved = _move(out_root, monkeypatch)
    setup = {k: str(moved / Path(v).relative_to(out_root)) for k, v in saved_setup.items()}
    monkeypatch.chdir(moved)
    capsys.readouterr()
    for kind in ("base", "peft"):
        _run_eval(_argv(setup, kind, "corpus.txt"))  # typed relative to the current folder
        out = capsys.readouterr().out
        assert f"core: eval/SAE-Bench/results/tinyrand_{kind}/" in out and SKIP_LINE in out
    after = sorted((moved / "eval" / "SAE-Bench" / "results").glob("*/*/core.json"))
    assert {p.relative_to(moved): p.read_bytes() for p in after} == before  # nothing redone, nothing added


def test_an_interp_result_is_found_done_after_the_root_moved(world_model, out_root, monkeypatch, capsys):
    from eval_setup_helpers import save_default_sae_and_adapter

    save_default_sae_and_adapter(world_model)
    corpus = out_root / "corpus.txt"
    corpus.write_text(
        "\n\n".join(f"the cat number {i} sat on the mat and looked at the dog." for i in range(400))
    )

    def argv(dataset: str) -> list[str]:
        return [
            "--model", str(world_model), "--device", "cpu", "--dataset", dataset, "--num_tokens", "256",
            "--ctx_len", "64", "--batch_size", "4", "--resamples", "50", "--progress", "false", "--plots", "false",
        ]  # fmt: skip

    _script("eval/interp_analysis/run.py", argv(str(corpus)))  # typed absolute
    (out,) = (out_root / "data" / "interp").glob("*/*/*[!n].json")  # the result, not its run record
    assert read_record(out).get("settings")["dataset"] == "corpus.txt"
    before = out.read_bytes()
    moved = _move(out_root, monkeypatch)
    monkeypatch.chdir(moved)
    capsys.readouterr()
    _script("eval/interp_analysis/run.py", argv("corpus.txt"))  # typed relative to the current folder
    assert f"interp: {out.relative_to(out_root)} {SKIP_LINE}" in capsys.readouterr().out
    assert (moved / out.relative_to(out_root)).read_bytes() == before
