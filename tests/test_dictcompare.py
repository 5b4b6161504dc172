"""Issue 28 item 6: the dictionary comparison (`lorasae.dictcompare`) and the timing figure's KL
fine-tunes. The gap each method closes against a hand computation; the table's columns, JSON and run
record, and a rerun of the same settings skipped; the plan reusing the store's TopK SAE only when its run
record is the comparison's own run; the KL fine-tune of a checkpoint found through the records and placed
at x = checkpoint time + fine-tune time."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from lorasae.dictcompare.config import DictionariesConfig
from lorasae.dictcompare.table import COLUMNS, LoraNumbers, Row

pytestmark = pytest.mark.usefixtures("one_thread")


def _row(clean=1.5, spliced=2.0, lora=1.8, kl=1.9, both=1.7) -> Row:
    return Row("topk", 4.0, 0.2, 0.5, 0.1, LoraNumbers(clean, spliced, lora, 0.3),
               LoraNumbers(clean, kl, both, 0.25))  # fmt: skip


def test_gap_closed_by_lora_kl_fine_tune_and_both_matches_a_hand_computation():
    values = _row().values()
    # gap 2.0 − 1.5 = 0.5: LoRA closes 0.2 (40 %), the fine-tune 0.1 (20 %), both 0.3 (60 %)
    assert values["gap closed % LoRA"] == pytest.approx(40.0)
    assert values["gap closed % KL-ft"] == pytest.approx(20.0)
    assert values["gap closed % both"] == pytest.approx(60.0)
    assert (values["CE clean"], values["CE spliced"], values["CE +KL-ft"]) == (1.5, 2.0, 1.9)
    assert values["both min"] == pytest.approx(0.1 + 0.25)  # the fine-tune, then LoRA on it
    assert list(values) == list(COLUMNS)


def test_a_dictionary_that_does_not_raise_the_ce_gets_no_percentage():
    values = _row(clean=1.5, spliced=1.5, lora=1.49).values()
    assert values["gap closed % LoRA"] is None


def _small(world_model: Path, **changes) -> DictionariesConfig:
    cfg = DictionariesConfig(model=str(world_model), dataset="builtin", layer=0, k=2, expansion_factor=4,
                             sae_tokens=4096, kl_tokens_pct=50, lora_examples=8, rank=2)  # fmt: skip
    return dataclasses.replace(cfg, **changes)


def test_the_table_is_saved_with_its_columns_and_record_and_the_same_settings_are_then_done(
    world_model, out_root, monkeypatch, capsys
):
    from lorasae.core.records import record_path
    from lorasae.dictcompare import comparison as run_module
    from lorasae.dictcompare.table import comparison_path, done, load_comparison, write_comparison

    cfg = _small(world_model)
    assert not done(cfg)
    path = write_comparison(cfg, [_row()], 1.0)
    assert path.is_file() and record_path(path).is_file()
    payload = load_comparison(out_root, path.parent.name)
    assert payload["columns"] == list(COLUMNS) and payload["rows"][0]["gap closed % LoRA"] == pytest.approx(
        40
    )
    assert done(cfg)
    # a different setting: another file, not done
    other = dataclasses.replace(cfg, kl_tokens_pct=25)
    assert comparison_path(other) != path and not done(other)
    # a rerun of the same settings trains nothing
    monkeypatch.setattr(run_module, "plan_rows", lambda cfg: pytest.fail("a done comparison was redone"))
    assert run_module.run_comparison(cfg) == path
    assert "Skipped" in capsys.readouterr().out


def test_an_explicit_k_equal_to_the_models_default_names_the_same_table_as_none(world_model, out_root):
    # make demo passes --k 4 and README's command too; the default (None) is the model's k: one comparison
    from lorasae.dictcompare.plan import matched_k
    from lorasae.dictcompare.table import comparison_path, identity

    implicit = _small(world_model, k=None)
    explicit = _small(world_model, k=matched_k(implicit))
    assert comparison_path(explicit) == comparison_path(implicit)
    assert identity(explicit) == identity(implicit)
    other = _small(world_model, k=matched_k(implicit) + 1)
    assert comparison_path(other) != comparison_path(implicit)


def test_the_plan_reuses_the_stores_topk_sae_only_when_its_record_is_this_run_and_finds_its_kl_fine_tune(
    world_model, out_root
):
    from lorasae.dictcompare.plan import plan_rows, sae_config
    from lorasae.dictcompare.run import fine_tune
    from lorasae.model.load import model_key
    from lorasae.results.kl_fine_tunes import find_kl_fine_tunes
    from lorasae.train.sae_trainer import train_sae

    cfg = _small(world_model, architectures=["topk", "batchtopk"])
    trained = train_sae(sae_config(cfg, "topk"))
    topk, batchtopk = plan_rows(cfg)
    assert topk.reused == Path(trained.final_dir) and batchtopk.reused is None
    (again,) = plan_rows(dataclasses.replace(cfg, sae_tokens=8192, architectures=["topk"]))
    assert again.reused is None  # another token budget: not the same run
    (seeded,) = plan_rows(dataclasses.replace(cfg, seed=7, architectures=["topk"]))
    assert seeded.reused is None

    tuned = fine_tune(cfg, topk.sae, topk.reused)
    assert tuned.folder.parent.name == f"{topk.reused.parent.name}__kl-ft__n-2048"  # 50 % of 4096 tokens
    (found,) = find_kl_fine_tunes(None, model_key(str(world_model)), topk.reused.parent.name, 0)
    assert found.pct == 100.0 and found.tokens == cfg.kl_tokens and len(found.curve) == 2


def test_the_default_comparisons_kl_fine_tunes_keep_the_plain_name_and_every_row_is_fine_tuned(world_model):
    """Issue 28's last gaps: the default KL budget is train_sae.py's (its folder keeps `<tag>__kl-ft`, the
    name the demo's fine-tunes had), the skip transcoder is a row after the transcoder, and both
    transcoders now get the KL fine-tune (train_sae no longer refuses it)."""
    from lorasae.dictcompare.plan import kl_budget, kl_config, plan_rows, resolve
    from lorasae.dictcompare.run import kl_unsupported
    from lorasae.model.defaults import SMALL_MODEL_KL_FINE_TUNE_TOKENS
    from lorasae.train.state import checkpoint_dir

    cfg = DictionariesConfig(model=str(world_model), dataset="builtin", layer=0, k=2, expansion_factor=4)
    assert cfg.architectures[-2:] == ["transcoder", "skip_transcoder"]
    assert kl_budget(cfg) == SMALL_MODEL_KL_FINE_TUNE_TOKENS
    rows = plan_rows(cfg)
    for row in rows:
        parent = checkpoint_dir(row.sae)
        tuned = resolve(kl_config(cfg, row.sae, parent))
        assert checkpoint_dir(tuned).parent.name == f"{parent.parent.name}__kl-ft", row.architecture
        assert kl_unsupported(cfg, row) == "", row.architecture
    skip = rows[-1].sae
    assert skip.architecture == "skip_transcoder" and skip.sae_kwargs.transcoder_activation == "topk"
    assert skip.k == 2


def test_the_timing_figures_kl_points_start_at_the_checkpoints_training_time_plus_the_fine_tune_time():
    from lorasae.results.curves import Curve
    from lorasae.results.kl_fine_tunes import KlFineTune, kl_points

    topk = Curve.from_lists(np.linspace(0, 10, 11), np.linspace(3, 2, 11))  # 1 min per 10 %
    tunes = [KlFineTune(20.0, Curve.from_lists([0, 0.5], [2.8, 2.5]), 30_000),
             KlFineTune(100.0, Curve.from_lists([0, 0.4], [2.0, 1.9]), 30_000)]  # fmt: skip
    (pct20, x20, ce20), (pct100, x100, ce100) = kl_points(topk, tunes)
    assert (pct20, pct100) == (20.0, 100.0)
    np.testing.assert_allclose(x20, [2.0, 2.5])
    np.testing.assert_allclose(x100, [10.0, 10.4])
    np.testing.assert_allclose(ce100, [2.0, 1.9])


def test_the_shards_run_every_job_once_and_the_topk_row_owns_the_100_percent_fine_tune(tmp_path, monkeypatch):
    from lorasae.dictcompare import shards

    cfg = DictionariesConfig(kl_checkpoints=[20, 40, 100])
    every = shards.jobs(cfg)
    assert ("checkpoint", 100) not in every and ("checkpoint", 20) in every and ("row", "topk") in every
    assert len(every) == len(set(every))
    alone = shards.jobs(dataclasses.replace(cfg, architectures=["jumprelu"]))
    assert ("checkpoint", 100) in alone  # no TopK row to share it with
    # two workers sharing one claims folder: whichever asks first gets a job, the other never runs it
    ran: dict[str, list] = {"a": [], "b": []}
    claims = tmp_path / "claims"
    claims.mkdir()
    for job in every:
        for worker in ("a", "b") if len(ran["a"]) <= len(ran["b"]) else ("b", "a"):
            if shards.claim(claims, job):
                ran[worker].append(job)
    assert sorted(ran["a"] + ran["b"]) == sorted(every) and ran["a"] and ran["b"]
    assert not shards.claim(claims, every[0])
    # the worker's own loop: jobs already claimed (by the other process) are skipped, the rest run in order
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps(dataclasses.asdict(cfg)))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shards.claim(fresh, every[1])
    done: list = []
    monkeypatch.setattr(shards, "run_job", lambda c, job: done.append(job))
    shards.main([str(config_file), str(fresh)])
    assert done == [every[0], *every[2:]]


def test_a_dictionary_that_cannot_be_kl_fine_tuned_gets_no_kl_numbers_and_the_table_says_why():
    from lorasae.dictcompare.table import format_table

    row = Row("transcoder", 4.0, 0.4, 0.4, None, LoraNumbers(1.5, 1.6, 1.55, 0.3), None,
              kl_missing="--architecture transcoder does not support --objective kl yet")  # fmt: skip
    values = row.values()
    assert values["gap closed % LoRA"] == pytest.approx(50.0)
    assert values["CE +KL-ft"] is None and values["gap closed % both"] is None and values["both min"] is None
    payload = {"columns": list(COLUMNS), "rows": [values], "caption": "c.",
               "not_fine_tuned": {"transcoder": row.kl_missing}}  # fmt: skip
    assert "transcoder: no KL fine-tune (--architecture transcoder does not support" in format_table(payload)


def test_the_comparison_redoes_finished_work_with_overwrite_as_every_eval_and_keeps_force_as_an_alias():
    from lorasae.core.cli import parse

    assert parse(DictionariesConfig, ["--overwrite"]).overwrite is True
    assert parse(DictionariesConfig, ["--force"]).overwrite is True  # the earlier spelling
    assert parse(DictionariesConfig, []).overwrite is False
