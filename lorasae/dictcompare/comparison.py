"""The comparison as a whole (`run_comparison`): its rows' runs (`run`), in several processes at once
where that pays (`shards`), then the table (`table`) and the figure (`figure`)."""

from __future__ import annotations

import time
from pathlib import Path

from lorasae.core.errors import PreflightError
from lorasae.dictcompare.config import DictionariesConfig
from lorasae.dictcompare.plan import plan_rows
from lorasae.dictcompare.run import fine_tune_checkpoints, run_row
from lorasae.dictcompare.table import comparison_path, done, write_comparison


def run_comparison(cfg: DictionariesConfig) -> Path:
    """Every row, the table (printed and saved with its run record) and the figure; returns the JSON."""
    problems = cfg.problems()
    if problems:
        raise PreflightError("eval/dictionaries/run.py: " + "; ".join(problems))
    path = comparison_path(cfg)
    if not cfg.overwrite and done(cfg):
        print(f"Skipped: {path} holds this comparison (same settings); --overwrite redoes it.")
        return path
    began = time.perf_counter()
    workers = _workers(cfg)
    if workers > 1:  # the runs in parallel processes; here each is then skipped by its record
        from lorasae.dictcompare.shards import run_sharded

        run_sharded(cfg, workers)
    fine_tune_checkpoints(cfg)
    rows = [run_row(cfg, plan) for plan in plan_rows(cfg)]
    write_comparison(cfg, rows, time.perf_counter() - began)
    from lorasae.dictcompare.figure import plot_comparison
    from lorasae.dictcompare.table import print_comparison

    print_comparison(_model_key(cfg))
    for file in plot_comparison(None, _model_key(cfg), comparison=path):
        print(f"  figure: {file}")
    return path


def _workers(cfg: DictionariesConfig) -> int:
    """--shards, else one process per CPU core (1 on a GPU); never more than the jobs."""
    from lorasae.core.runtime import available_cpus, parse_device
    from lorasae.dictcompare.shards import jobs

    wanted = cfg.shards or (available_cpus() if parse_device(cfg.device).type == "cpu" else 1)
    return max(1, min(wanted, len(jobs(cfg))))


def _model_key(cfg: DictionariesConfig) -> str:
    from lorasae.model.load import model_key

    return model_key(cfg.model_name)


def main(cfg: DictionariesConfig) -> Path:
    return run_comparison(cfg)
