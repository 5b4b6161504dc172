"""Dictionaries compared at matched L0 (issue 28): TopK, BatchTopK, Matryoshka, JumpReLU and TopK
transcoders (plain and skip), each with the CE spliced, after LoRA, after a KL fine-tune and after both.

    python eval/dictionaries/run.py                                   (the built-in model, demo budgets)
    python eval/dictionaries/run.py --architectures topk jumprelu --kl_tokens_pct 5

Writes data/dictionaries/<model>/comparison[__<variant>].json (with its run record) and
plots/<model>_dictionaries[__<variant>].{png,pdf} (the same variant); every SAE, fine-tune and LoRA run
writes its usual outputs. A finished comparison is skipped; --overwrite (earlier: --force) redoes it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.errors import main_guard  # noqa: E402
from lorasae.dictcompare.comparison import main  # noqa: E402
from lorasae.dictcompare.config import DictionariesConfig  # noqa: E402


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    main(parse(DictionariesConfig, argv))


if __name__ == "__main__":
    sys.exit(cli())
