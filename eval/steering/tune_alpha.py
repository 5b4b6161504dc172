"""Tune the steering strength alpha (SPEC §4.2) → eval/steering/results/latent_<N>_alpha[__<variant>].json
(`__<variant>`: settings off the defaults, `lorasae/steering/variants.py`).

    python eval/steering/tune_alpha.py --device 0 --neuron N --tuning --alpha A   (evaluate one alpha)
    python eval/steering/tune_alpha.py --device 0 --neuron N --tuning             (sweep a grid, choose)
    python eval/steering/tune_alpha.py --device cpu --model tiny                  (offline)

Each alpha is evaluated on the tuning split (the medical negatives plus a share of the positives) with
the base and the rank-1 LoRA model. The choice rule (printed, and stored in the record): the alpha with
the largest selectivity mean Δ(positives) − mean Δ(negatives), averaged over both models, among those
whose side effect stays within budget (the negatives' mean Δ ≥ −max_negative_drop for each model); ties
go to the smaller |alpha|. Every recorded alpha of the split counts, so single evaluations (--alpha)
accumulate as the original's manual tuning did.
"""

import sys

from lorasae.cli import parse
from lorasae.errors import main_guard
from lorasae.steering.scripts import TuneConfig as Config
from lorasae.steering.scripts import tune as main


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.errors`)."""
    main(parse(Config, argv))


if __name__ == "__main__":
    sys.exit(cli())
