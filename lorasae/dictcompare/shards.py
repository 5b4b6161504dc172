"""The comparison's runs in several processes at once (`run_sharded`): a small model's SAE, fine-tune or
LoRA step is a chain of small ops that one thread runs nearly as fast as two (`lorasae.sweep.shards`), so
two one-thread processes on two cores finish the independent jobs (one per row, one per extra checkpoint
fine-tune) in about half the time and CPU. Each process is `python -m lorasae.dictcompare.shards
<config.json> <claims folder>` and takes the next job nobody has claimed yet (`claim`: a file created
exclusively in a folder the caller made for this comparison), so a process that finishes early takes more
work instead of idling while the other runs its share (a split fixed up front left one of two processes
idle for the last ~30 s of the demo's stage). The processes are started by `lorasae.core.processes`; the
table is then gathered in the calling process, where every run is done and skipped by its own record."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from lorasae.dictcompare.config import DictionariesConfig

Job = tuple[str, str | int]
"""("row", architecture) or ("checkpoint", percent)."""


def jobs(cfg: DictionariesConfig) -> list[Job]:
    """Every job: the rows (the cheap TopK row, whose SAE is reused, last), then the checkpoints' fine-tunes
    (the 100 % one is the TopK row's when there is one)."""
    rows = [a for a in cfg.architectures if a != "topk"] + [a for a in cfg.architectures if a == "topk"]
    shared = {100} if "topk" in cfg.architectures else set()
    return [("row", a) for a in rows] + [("checkpoint", p) for p in cfg.kl_checkpoints if p not in shared]


def job_name(job: Job) -> str:
    """A job's claim file name: `row-<architecture>` or `checkpoint-<percent>`."""
    return f"{job[0]}-{job[1]}"


def claim(claims: Path, job: Job) -> bool:
    """Whether this process got `job`: True for the one process whose exclusive create of its claim file
    in `claims` succeeded, False for every other."""
    try:
        os.close(os.open(claims / job_name(job), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def run_job(cfg: DictionariesConfig, job: Job) -> None:
    from lorasae.dictcompare.plan import plan_rows
    from lorasae.dictcompare.run import fine_tune_checkpoints, run_row

    kind, what = job
    if kind == "row":
        (plan,) = plan_rows(dataclasses.replace(cfg, architectures=[str(what)]))
        run_row(cfg, plan)
    else:
        fine_tune_checkpoints(dataclasses.replace(cfg, kl_checkpoints=[int(what)]))


def config_path(cfg: DictionariesConfig) -> Path:
    from lorasae.dictcompare.table import comparison_path

    path = comparison_path(cfg)
    return path.with_name(path.name.removesuffix(".json") + ".config.json")


def run_sharded(cfg: DictionariesConfig, workers: int) -> None:
    """Run every job in `workers` processes at once (one thread each on the CPU), each taking the next
    unclaimed job; the claims folder is made for this call and removed after it."""
    from lorasae.core.atomic import atomic_write_json
    from lorasae.core.processes import run_processes

    config_file = config_path(cfg)
    atomic_write_json(config_file, dataclasses.asdict(cfg))
    claims = Path(tempfile.mkdtemp(prefix=".claims-", dir=config_file.parent))
    try:
        command = [sys.executable, "-m", "lorasae.dictcompare.shards", str(config_file), str(claims)]
        run_processes([command] * workers, "dictionaries shard")
    finally:
        shutil.rmtree(claims, ignore_errors=True)


def main(argv: list[str]) -> None:
    """`<config.json> <claims folder>`: run every job no other process has claimed, in `jobs` order."""
    config_file, claims = argv
    cfg = DictionariesConfig(**json.loads(Path(config_file).read_text()))
    for job in jobs(cfg):
        if claim(Path(claims), job):
            run_job(cfg, job)


if __name__ == "__main__":
    from lorasae.core.errors import main_guard

    sys.exit(main_guard(main)(sys.argv[1:]))
