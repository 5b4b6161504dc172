"""One eval shape and one registry (`lorasae.evals`): the demo's evaluation stages, their order, titles and
count, `run_eval.py --evals` and the SAE-Bench comparison tables all come from the registry, and they are
what they were before it (pinned here)."""

from __future__ import annotations

import pytest

from lorasae.demo import main as demo
from lorasae.demo.main import DemoConfig

PINNED_EVAL_STAGES = [
    "SAE-Bench (core, sparse_probing, scr, tpp, absorption, ravel, unlearning) on the base and the "
    "LoRA-merged model",
    "steering (latent, positives, alpha, evaluation)",
    "benchmarks (base / LoRA × without / with the SAE)",
    "interpretability analysis (activation distances, per-token loss)",
    "Dark Matter of SAEs (error prediction, power law, components, base vs LoRA)",
    "dictionaries at matched L0 (k=4): topk, batchtopk, matryoshka, jumprelu, transcoder, skip_transcoder; LoRA, "
    "KL fine-tune, both; KL fine-tunes of TopK checkpoints [20, 50, 80, 100] %",
    "latent dashboards (steering latent and the latents the adapter changes most)",
]
"""The demo's evaluation stages in order (`make demo`'s stages 9 … 15): those from before the registry,
and the dictionaries' comparison (issue 28) added through it."""


class _Recorder:
    """Stands in for `demo_stages.Stages`: records each stage's title, runs nothing."""

    def __init__(self) -> None:
        self.titles: list[str] = []

    def run(self, title: str, done: bool, fn: object) -> None:
        assert isinstance(done, bool) and callable(fn)
        self.titles.append(title)


class _Stop(Exception):
    pass


def _demo_total(monkeypatch: pytest.MonkeyPatch, evals: bool) -> int:
    """The stage count `run_demo` announces (it stops right after creating its stage runner)."""
    seen: list[int] = []

    def stages(total: int, record: object) -> None:
        seen.append(total)
        raise _Stop

    monkeypatch.setattr(demo, "Stages", stages)
    with pytest.raises(_Stop):
        demo.run_demo(DemoConfig(evals=evals))
    return seen[0]


def test_the_demo_eval_stages_keep_their_order_and_titles(out_root, small_world, monkeypatch):
    import shutil

    # a stage's done check may read the model (the comparison's table names it): the small world stands in
    # for the built-in one, which would otherwise be built here
    shutil.copytree(small_world, out_root / "saved_models" / "tiny")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    recorder = _Recorder()
    started: list[str] = []

    class Started:  # stands in for the process `lorasae.demo.beside` would start
        def wait(self) -> None: ...
        def interrupt(self) -> None: ...

    monkeypatch.setattr(
        "lorasae.demo.beside.start_beside", lambda ref, ctx, label: started.append(label) or Started()
    )
    monkeypatch.setattr("lorasae.core.runtime.available_cpus", lambda: 2)
    demo._eval_stages(recorder, DemoConfig(), 4, 4)
    assert recorder.titles == PINNED_EVAL_STAGES
    # Dark Matter (`EvalSuite.demo_beside`) was started before the first stage, in its own process, and its
    # stage at its turn waits for it
    assert started == ["Dark Matter of SAEs"]


def test_the_demo_announces_sixteen_stages_with_evals_and_eight_without(out_root, monkeypatch):
    assert _demo_total(monkeypatch, evals=True) == 16
    assert _demo_total(monkeypatch, evals=False) == 8


def test_the_registry_lists_every_suite_once_in_order():
    from lorasae.evals import suites

    assert [s.name for s in suites()] == [
        "core", "sparse_probing", "scr", "tpp", "absorption", "autointerp", "ravel", "unlearning",
        "steering", "benchmarks", "interp", "dark_matter", "dictionaries", "dashboards", "grokking",
    ]  # fmt: skip


def test_every_suite_names_a_settings_class_a_runner_and_loadable_parts():
    import inspect

    from lorasae.evals import suites

    for suite in suites():
        assert inspect.isclass(suite.load("config")), suite.name
        assert callable(suite.load("run")), suite.name
        for part in ("table", "figure", "demo_stage"):
            if getattr(suite, part):
                assert callable(suite.load(part)), (suite.name, part)
    with pytest.raises(LookupError, match="has no demo_stage"):
        next(s for s in suites() if s.name == "grokking").load("demo_stage")


def test_saebench_names_flags_and_table_columns_come_from_the_registry(capsys):
    from lorasae.core.cli import parse
    from lorasae.evals import family
    from lorasae.saebench.args import SaeBenchArgs
    from lorasae.saebench.comparison import HEADLINE
    from lorasae.saebench.plan import selected_evals

    names = [s.name for s in family("saebench")]
    assert len(names) == 8 and selected_evals("all") == names
    with pytest.raises(SystemExit):
        parse(SaeBenchArgs, ["--help"])
    assert f"Comma-separated evals: {', '.join(names)}" in " ".join(capsys.readouterr().out.split())
    # the comparison table's columns, as they were before the registry
    assert {name: [label for _, _, label in rows] for name, rows in HEADLINE.items()} == {
        "core": ["L0", "explained variance", "cosine sim", "CE loss score", "CE with SAE", "CE clean",
                 "KL score", "dead fraction", "dense fraction"],
        "sparse_probing": ["LLM probe acc", "SAE top-1 acc", "SAE top-2 acc", "SAE top-5 acc",
                           "SAE all-latents acc"],
        "scr": ["SCR top-2", "SCR top-10", "SCR top-20"],
        "tpp": ["TPP top-2", "TPP top-10", "TPP top-20"],
        "absorption": ["absorption fraction", "full absorption"],
        "autointerp": ["autointerp score"],
        "ravel": ["disentanglement", "cause", "isolation"],
        "unlearning": ["unlearning score"],
    }  # fmt: skip


def test_an_eval_added_in_its_own_folder_joins_the_registry_and_the_demo(
    out_root, small_world, tmp_path, monkeypatch
):
    """Adding an eval touches one folder: a package with a suite.py is listed, and its demo stage runs."""
    import shutil

    import lorasae

    shutil.copytree(small_world, out_root / "saved_models" / "tiny")  # the done checks may read the model
    from lorasae.evals import registry

    folder = tmp_path / "toy_eval"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "suite.py").write_text(
        "from dataclasses import dataclass\n"
        "from lorasae.evals.shape import EvalSuite\n\n"
        "@dataclass\nclass ToyArgs:\n    n: int = 1\n\n"
        "def run(args):\n    return args.n\n\n"
        "def demo_stage(ctx):\n    return ('toy eval', False, lambda: None)\n\n"
        "SUITES = (EvalSuite('toy', 'a toy', 'lorasae.toy_eval.suite:ToyArgs', 'lorasae.toy_eval.suite:run',"
        " demo_stage='lorasae.toy_eval.suite:demo_stage', order=65),)\n"
    )
    monkeypatch.setattr(lorasae, "__path__", [*lorasae.__path__, str(tmp_path)])
    registry.suites.cache_clear()
    try:
        assert [s.name for s in registry.suites()][-3:] == ["dashboards", "toy", "grokking"]
        assert demo.stage_count(True) == 17
        recorder = _Recorder()
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        demo._eval_stages(recorder, DemoConfig(), 4, 4)
        assert recorder.titles == [*PINNED_EVAL_STAGES, "toy eval"]
    finally:
        registry.suites.cache_clear()
