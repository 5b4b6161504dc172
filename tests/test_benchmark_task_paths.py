"""The built-in lm-eval task files name their data relative to the output root, so a moved root (or a
clone elsewhere) still runs them."""

from __future__ import annotations

import shutil
from pathlib import Path

from lorasae.lmeval.layout import builtin_tasks_dir
from lorasae.lmeval.tasks import write_builtin_tasks


def _docs(folder: Path, task: str) -> list[dict]:
    from lm_eval.tasks import TaskManager, get_task_dict

    tasks = get_task_dict([task], TaskManager(include_path=str(folder), include_defaults=False))
    loaded = tasks[task]
    return list(loaded.test_docs() if loaded.has_test_docs() else loaded.validation_docs())


def test_task_yaml_holds_no_absolute_path_and_a_moved_root_still_runs_it(tmp_path, monkeypatch):
    first, moved = tmp_path / "first", tmp_path / "moved"
    monkeypatch.setenv("LORASAE_ROOT", str(first))
    folder = write_builtin_tasks(builtin_tasks_dir(0, 800), seed=0, n_docs=800)
    for name in ("tiny_facts.yaml", "tiny_domains.yaml", "tiny_truthful_mc2.yaml"):
        text = (folder / name).read_text()
        assert str(first) not in text and "eval/benchmarks/results/builtin_tasks/world_0_800docs/" in text
    before = _docs(folder, "tiny_facts")

    shutil.move(first, moved)
    monkeypatch.setenv("LORASAE_ROOT", str(moved))
    monkeypatch.chdir(tmp_path)  # relative paths must not resolve against the working directory
    after = _docs(moved / folder.relative_to(first), "tiny_facts")
    assert len(after) == len(before) > 50 and after == before
    assert len(_docs(moved / folder.relative_to(first), "tiny_truthful_mc2")) > 10


def test_a_task_folder_outside_the_root_keeps_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path / "root"))
    folder = write_builtin_tasks(tmp_path / "elsewhere", seed=0, n_docs=800)
    assert f'"{folder / "tiny_facts_test.jsonl"}"' in (folder / "tiny_facts.yaml").read_text()
    assert len(_docs(folder, "tiny_facts")) > 50
