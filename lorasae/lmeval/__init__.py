"""General benchmarks (SPEC §4.3): lm-eval-harness on the base and LoRA models, with and without the SAE
spliced in; built-in lm-eval tasks for the offline world."""

from lorasae.lmeval.comparison import comparison_table
from lorasae.lmeval.config import BenchmarkConfig
from lorasae.lmeval.layout import ALL_FOUR, Combination, results_path
from lorasae.lmeval.run import run_benchmarks
from lorasae.lmeval.tasks import BUILTIN_TAG, BUILTIN_TASKS, write_builtin_tasks
from lorasae.lmeval.wrapper import benchmark_lm, make_hflm, sae_spliced

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
