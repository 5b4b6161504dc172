"""Train a TopK SAE (or an e2e SAE with --e2e) on the residual stream after decoder layer L (SPEC §3.1).

    python train_sae.py --device 0 --model_type gemma --layer 12 --num_train_tokens 2_000_000_000 [--e2e]
    python train_sae.py --device cpu --model_type tiny --layer 1 --num_train_tokens 300_000
    torchrun --nproc_per_node 2 train_sae.py ...   (data-parallel; --batch_size counts all ranks)

Writes saved_saes/<model>/<normal|e2e>/expansion_<E>_L0_<k>[-<pct>pct]/model.layers.<L>/ (each with its
run record run.json) and data/TopK/{time,val_loss}/<model>/<normal|e2e>_SAE.json (the model's default
SAE; any other SAE: <kind>_<tag>__layer_<L>_SAE.json). An identical finished rerun is skipped (--overwrite
trains it again). `--help` lists every flag; `--config_file
cfg.json|cfg.yaml` gives any of them from a file (flags on the command line override it; nested ones also
as `--sae_kwargs.sparsity 5`), and every SAE folder gets the resolved `config.json` that reruns it.
"""

import sys

from lorasae.train.config import TrainSaeConfig
from lorasae.train.sae_trainer import train_sae
from utils import main_guard, parse_with_config_file


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    train_sae(parse_with_config_file(TrainSaeConfig, argv))


if __name__ == "__main__":
    sys.exit(cli())
