"""One eval shape and one registry (`lorasae.evals`): the demo's evaluation stages, their order, titles and
count, `run_eval.py --evals` and the SAE-Bench comparison tables all come from the registry, and they are
what they were before it (pinned here)."""

from __future__ import annotations

import pytest

from lorasae import demo
from lorasae.demo import DemoConfig

PINNED_EVAL_STAGES = [
    "SAE-Bench (core, sparse_probing, scr, tpp, absorption, ravel, unlearning) on the base and the "
    "LoRA-merged model",
    "steering (latent, positives, alpha, evaluation)",
    "benchmarks (base / LoRA × without / with the SAE)",
    "interpretability analysis (activation distances, per-token loss)",
    "Dark Matter of SAEs (error prediction, power law, components, base vs LoRA)",
    "latent dashboards (steering latent and the latents the adapter changes most)",
]
"""The demo's evaluation stages before the registry, in order (`make demo`'s stages 9 … 14)."""


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


def test_the_demo_eval_stages_keep_their_order_and_titles(out_root, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    recorder = _Recorder()
    demo._eval_stages(recorder, DemoConfig(), 4, 4)
    assert recorder.titles == PINNED_EVAL_STAGES


def test_the_demo_announces_fifteen_stages_with_evals_and_eight_without(out_root, monkeypatch):
    assert _demo_total(monkeypatch, evals=True) == 15
    assert _demo_total(monkeypatch, evals=False) == 8
