"""Dark Matter of SAEs (Engels et al., TMLR 2025) on our SAEs or Gemma Scope (SPEC §7).

    python eval/dark_matter/run.py --model tiny                     (offline; trains missing SAEs)
    python eval/dark_matter/run.py --model tiny --num_tokens 20k --lora none
    python eval/dark_matter/run.py --model_type gemma --device 0    (Gemma Scope layer 12, widths 16k … 1m)
    python eval/dark_matter/run.py --model_type gemma-9b --plan_only   (which SAEs, from sae-lens, offline)

Writes the SAEInfo records (data/dark_matter/<model>/info/*.safetensors), results.json and results.md
(data/dark_matter/<model>/) and the figures (plots/dark_matter/<model>/); with settings off the
defaults, results__<variant>.json / .md and plots/dark_matter/<model>__<variant>/ (never over the default run).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lorasae.cli import parse  # noqa: E402
from lorasae.darkmatter.cli import DarkMatterArgs, main  # noqa: E402
from lorasae.errors import main_guard  # noqa: E402


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.errors`)."""
    main(parse(DarkMatterArgs, argv))


if __name__ == "__main__":
    sys.exit(cli())
