"""Merge a saved LoRA adapter into the base model's weights and save the full state dict, which
`run_eval.py --model_type peft` loads (SPEC §4.1).

    python eval/SAE-Bench/get_peft_dict.py
    python eval/SAE-Bench/get_peft_dict.py --model tiny --adapter saved_models/tiny/<sae_tag>/peft_0-3/rank_16

Defaults as the original: Gemma-2-2B with the rank-64 adapter on layers 0-25 trained for the
expansion_8_L0_64 SAE (the newest adapter of the model when that one is absent), saved to
eval/SAE-Bench/peft_dicts/<model>_<sae_tag>_peft_<a>-<b>_rank_<r>.pt.
"""

import sys
from dataclasses import dataclass

from lorasae.cli import parse
from lorasae.models import model_key
from lorasae.saebench.load import save_peft_dict

ORIGINAL_ADAPTER = {"sae_tag": "expansion_8_L0_64", "rank": 64, "lora_span": "0-25"}


@dataclass
class Config:
    """Merge an adapter and save the state dict."""

    model: str = "gemma"
    """Base model: gemma (google/gemma-2-2b), llama, tiny (built-in) or any Hugging Face id or folder."""

    adapter: str | None = None
    """Adapter folder (PEFT format). Default: the original's (rank 64, layers 0-25, expansion_8_L0_64 SAE)
    for Gemma when saved, else the newest adapter saved for the model."""

    output: str | None = None
    """Output file. Default: eval/SAE-Bench/peft_dicts/<model>_<sae_tag>_peft_<a>-<b>_rank_<r>.pt."""

    device: str = "cpu"
    """Device used for merging ('cpu', a GPU index or 'cuda:N')."""

    dtype: str = "float32"
    """Weights dtype: float32 or bfloat16."""


def default_adapter(model: str) -> str | None:
    from lorasae.lora.adapters import find_adapter

    if model_key(model) == "gemma":
        try:
            return str(find_adapter("gemma", **ORIGINAL_ADAPTER))
        except FileNotFoundError:
            return None
    return None


if __name__ == "__main__":
    config = parse(Config, sys.argv[1:])
    save_peft_dict(
        config.model,
        config.adapter or default_adapter(config.model),
        config.output,
        config.device,
        config.dtype,
    )
