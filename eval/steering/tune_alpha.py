"""Tune the steering strength alpha (SPEC §4.2) → eval/steering/results/latent_<N>_alpha.json.

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
from dataclasses import dataclass

from lorasae.cli import parse
from lorasae.errors import main_guard
from lorasae.steering.args import SteeringArgs
from lorasae.steering.context import load_context
from lorasae.steering.evaluator import llm_from_env
from lorasae.steering.latent import resolve_latent
from lorasae.steering.tune import tune_alpha
from lorasae.steering.tuning import parse_grid


@dataclass
class Config(SteeringArgs):
    """Evaluate one alpha or sweep a grid and choose one."""

    tuning: bool = True
    """Use the tuning split (default). `--tuning false` evaluates on the test split instead (for
    inspection only: choosing alpha there leaks the test set)."""

    alpha: float | None = None
    """Evaluate this alpha only (recorded with the others). Default: sweep the grid."""

    max_negative_drop: float = 5.0
    """Side-effect budget of the choice: the negatives' mean Δ may not fall below minus this (normalised
    log-likelihood, in percent of the unsteered range), for either model."""

    grid: str | None = None
    """Alphas to sweep, e.g. '0.5,1,2,4'. Default: 0.25 … 32 (doubling) for multiplicative steering;
    0.125 … 4 × the residual RMS norm for additive."""


def main(config: Config) -> None:
    ctx = load_context(config, with_adapter=True)
    resolve_latent(ctx, config.neuron)
    grid = parse_grid(config.grid) if config.grid else None
    tune_alpha(
        ctx,
        config,
        alpha=config.alpha,
        grid=grid,
        tuning=config.tuning,
        llm=llm_from_env(),
        max_negative_drop=config.max_negative_drop,
    )


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.errors`)."""
    main(parse(Config, argv))


if __name__ == "__main__":
    sys.exit(cli())
