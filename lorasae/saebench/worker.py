"""SAE-Bench runs in processes of their own (`python -m lorasae.saebench.worker <config>...`, each config a
`run_eval.py --config_file`): `make demo` evaluates the base and the LoRA-merged model at once, one thread
each. On the built-in model an SAE-Bench run gains only ~1.5× from a second thread (its probes and splices
are small matrices), so two one-thread processes finish both in less time than one two-thread process
running them in turn; they write different result folders, and the one finishing last draws the
comparison figure (its results are read after the other's are written)."""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lorasae.saebench.args import SaeBenchArgs


def run_in_processes(runs: Sequence[SaeBenchArgs]) -> None:
    """Each run of `runs` in its own process, all at once (the available cores split between them)."""
    from lorasae.core.atomic import atomic_write_json
    from lorasae.core.processes import run_processes

    with tempfile.TemporaryDirectory(prefix="lorasae-saebench-") as folder:
        commands = []
        for i, args in enumerate(runs):
            file = Path(folder) / f"run{i}.json"
            atomic_write_json(file, dataclasses.asdict(args))
            commands.append([sys.executable, "-m", "lorasae.saebench.worker", str(file)])
        run_processes(commands, "SAE-Bench worker")


def read_run(config_file: str) -> SaeBenchArgs:
    from lorasae.core.cli import parse

    return parse(SaeBenchArgs, ["--config_file", config_file])


def worker(config_files: Sequence[str]) -> None:
    """One worker: the runs of `config_files`, in order."""
    from lorasae.saebench.run import run

    for file in config_files:
        run(read_run(file))


if __name__ == "__main__":
    from lorasae.core.errors import main_guard

    sys.exit(main_guard(worker)(sys.argv[1:]))
