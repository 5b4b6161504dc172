"""lm-eval-harness benchmarks on the base or LoRA model, with or without the SAE spliced in (SPEC §4.3).

    python eval/benchmarks/run_benchmarks.py --device 0 --model_type base --model_size 2
    python eval/benchmarks/run_benchmarks.py --device 0 --model_type peft --model_size 9 --sae
    python eval/benchmarks/run_benchmarks.py --device cpu --model tiny --all_four          (offline)
    python eval/benchmarks/run_benchmarks.py --model tiny --model_type peft --sae --limit 50

Default tasks: MMLU, HellaSwag, TruthfulQA (mc1, mc2); for --model tiny the built-in tasks of the same
formats. Writes eval/benchmarks/results/<model>_<peft|base>_<sae|no_sae>[__<variant>].json (`<variant>`: the
settings off their defaults, e.g. `limit-50`) for the SAE and adapter picked by default; another SAE's or
adapter's results go to a folder that names it (`results/sae-<tag>-<digest>/`, `results/adapter-<label>/`,
`lorasae.lmeval.layout.Slot`); then prints the table comparing the four combinations of that SAE and adapter.
"""

import sys

from lorasae.core.cli import parse
from lorasae.core.errors import main_guard
from lorasae.lmeval.config import BenchmarkConfig
from lorasae.lmeval.run import run_benchmarks


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    run_benchmarks(parse(BenchmarkConfig, argv))


if __name__ == "__main__":
    sys.exit(cli())
