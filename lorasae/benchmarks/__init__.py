"""General benchmarks (SPEC §4.3): lm-eval-harness on the base and LoRA models, with and without the SAE
spliced in; built-in lm-eval tasks for the offline world."""

from lorasae.benchmarks.comparison import comparison_table
from lorasae.benchmarks.config import BenchmarkConfig
from lorasae.benchmarks.layout import ALL_FOUR, Combination, results_path
from lorasae.benchmarks.run import run_benchmarks
from lorasae.benchmarks.tasks import BUILTIN_TAG, BUILTIN_TASKS, write_builtin_tasks
from lorasae.benchmarks.wrapper import benchmark_lm, make_hflm, sae_spliced

__all__ = [
    "ALL_FOUR",
    "BUILTIN_TAG",
    "BUILTIN_TASKS",
    "BenchmarkConfig",
    "Combination",
    "benchmark_lm",
    "comparison_table",
    "make_hflm",
    "results_path",
    "run_benchmarks",
    "sae_spliced",
    "write_builtin_tasks",
]
