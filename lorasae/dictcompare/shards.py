"""The comparison's runs in several processes at once (`run_sharded`): a small model's SAE, fine-tune or
LoRA step is a chain of small ops that one thread runs nearly as fast as two (`lorasae.sweep.shards`), so
two one-thread processes on two cores finish the independent jobs (one per row, one per extra checkpoint
fine-tune) in about half the time and CPU. Each process is `python -m lorasae.dictcompare.shards
<config.json> i/n` and runs every n-th job (`shard_jobs`); the processes are started by the sweep's runner
(`lorasae.core.processes.run_processes`). The table is then gathered in the calling process, where every run
is done and skipped by its own record."""

from __future__ import annotations

import dataclasses
import json
import sys
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


def shard_jobs(all_jobs: list[Job], index: int, count: int) -> list[Job]:
    """The jobs of shard `index` of `count`: every `count`-th, from `index`."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: the index must be in 0 … {count - 1}")
    return all_jobs[index::count]


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
    """Run every job in `workers` processes at once (one thread each on the CPU)."""
    from lorasae.core.atomic import atomic_write_json
    from lorasae.core.processes import run_processes

    config_file = config_path(cfg)
    atomic_write_json(config_file, dataclasses.asdict(cfg))
    commands = [[sys.executable, "-m", "lorasae.dictcompare.shards", str(config_file), f"{i}/{workers}"]
                for i in range(workers)]  # fmt: skip
    run_processes(commands, "dictionaries shard")


def main(argv: list[str]) -> None:
    """`<config.json> i/n`: run shard i of n."""
    config_file, spec = argv
    index, count = (int(x) for x in spec.split("/"))
    cfg = DictionariesConfig(**json.loads(Path(config_file).read_text()))
    for job in shard_jobs(jobs(cfg), index, count):
        run_job(cfg, job)


if __name__ == "__main__":
    from lorasae.core.errors import main_guard

    sys.exit(main_guard(main)(sys.argv[1:]))
