"""Low-rank adapt a model to frozen SAEs (SPEC §3.2).

python train_lora.py --device 0 --model_type gemma --sae_layer 12 --rank 64 --num_train_examples 15000 --save_model
python train_lora.py --device cpu --model_type tiny --sae_layer 1 --rank 16 --num_train_examples 300 --checkpoint_percent 100 --save_model
python train_lora.py --model_type gemma --sae gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82 --rank 64
torchrun --nproc_per_node 2 train_lora.py ...   (data-parallel; also `accelerate launch`)
"""

from __future__ import annotations

import sys

from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.run import main
from utils import main_guard, parse


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    main(parse(TrainLoraConfig, argv))


if __name__ == "__main__":
    sys.exit(cli())
