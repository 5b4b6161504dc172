"""Demo stages run beside the others (`EvalSuite.demo_beside`): on a CPU with two or more cores, such a
stage starts in its own one-thread process when the evaluation stages begin, and the demo waits for it at
its turn. Dark Matter runs as fast on one thread as on two (36 vs 41 s on the built-in model), so beside
SAE-Bench's two workers and steering it costs the demo only the CPU it takes from them. Its stage's recorded
time is the time the demo waited for it at its turn, so the stage times still add up to the demo's.

The process is `python -m lorasae.demo.beside <module:function> <context.json>`: the stage function of the
registry, called with the demo's `DemoContext`, run."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from lorasae.core.processes import Started, start_processes
from lorasae.evals.shape import DemoContext, EvalSizes, resolve


def context_file(ref: str) -> Path:
    """Where the context of the stage `ref` is written for its process (kept: the rerun command of a failed
    process reads it)."""
    from lorasae.core import paths

    return paths.root() / "data" / "demo_beside" / f"{ref.replace(':', '.')}.context.json"


def start_beside(ref: str, ctx: DemoContext, label: str) -> Started:
    """Start the stage `ref` of the registry in a one-thread process; its lines come prefixed `[label]`."""
    from lorasae.core.atomic import atomic_write_json

    file = context_file(ref)
    atomic_write_json(file, dataclasses.asdict(ctx))
    command = [sys.executable, "-m", "lorasae.demo.beside", ref, str(file)]
    return start_processes([command], "stage beside the others", threads=1, labels=[label])


def load_context(file: Path) -> DemoContext:
    raw = json.loads(file.read_text())
    raw["sizes"] = EvalSizes(**raw["sizes"])
    tuples = {f.name for f in dataclasses.fields(DemoContext) if str(f.type).startswith("tuple")}
    return DemoContext(**{k: tuple(v) if k in tuples else v for k, v in raw.items()})


def main(argv: list[str]) -> None:
    """`<module:function> <context.json>`: run that demo stage."""
    ref, file = argv
    _title, _done, run = resolve(ref)(load_context(Path(file)))
    run()


if __name__ == "__main__":
    from lorasae.core.errors import main_guard

    sys.exit(main_guard(main)(sys.argv[1:]))
