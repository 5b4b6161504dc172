"""The paper's scaling study: LoRA adapters for Gemma Scope SAEs across L0, width, layer, model size and
rank, plus a LoRA on one layer at a time; same outputs as train_lora.py, then the scaling figures.

python sweep.py --dry_run                                   # print the plan (no GPU, no network)
python sweep.py --device 0 --model_type gemma               # every sweep on Gemma-2-2B (+ 9B for model size)
python sweep.py --device 0 --axes l0 width --ranks 16 64    # part of it
CUDA_VISIBLE_DEVICES=$i python sweep.py --device 0 --shard $i/4   # one process per GPU, 4 GPUs
python sweep.py --catalog ours --model_type tiny --device cpu --num_train_examples 160   # our own SAEs
python sweep.py --config_file data/sweeps/tiny.config.json --shard 0/2   # a shard of the demo's sweep

A sweep's manifest (`data/sweeps/<model>[__<variant>].json`), shard config and the figures drawn from the
manifest carry its settings off these defaults (`<variant>`; `--sweep_name` names it instead), so a sweep
with other settings never replaces another's; `make demo`'s sweep takes the plain names (`--sweep_name ''`).
"""

from __future__ import annotations

import sys

from lorasae.sweep.config import SweepConfig
from lorasae.sweep.run import cli

__all__ = ["SweepConfig", "cli"]

if __name__ == "__main__":
    sys.exit(cli())
