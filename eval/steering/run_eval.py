"""The steering evaluation (SPEC §4.2) → eval/steering/results/<SAE, adapter[, variant]>/latent_<N>.json
and eval/steering/distributions/<N>[__<variant>]/*.png (`lorasae/steering/variants.py`).

    python eval/steering/run_eval.py --device 0 --neuron N --alpha A
    python eval/steering/run_eval.py --device cpu --model tiny          (offline; alpha from tune_alpha.py)

The latent's unit decoder direction d steers the residual stream after the SAE's layer on every position
(h ← h + α (h·d) d; `--mode additive`: h ← h + α d), with no SAE spliced, in the base model and in the
model with the rank-1 `after` LoRA adapter. Per example: mean next-token log-likelihood, min-max
normalised per (model, set) on the unsteered values; Δ = steered − unsteered. The table gives each
model's mean Δ per set and the LoRA-minus-base Δ with a t-interval; histograms compare the two models.
"""

import sys

from lorasae.cli import parse
from lorasae.errors import main_guard
from lorasae.steering.scripts import EvalConfig as Config
from lorasae.steering.scripts import evaluate as main


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.errors`)."""
    main(parse(Config, argv))


if __name__ == "__main__":
    sys.exit(cli())
