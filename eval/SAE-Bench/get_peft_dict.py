"""Merge a saved LoRA adapter into the base model's weights and save the full state dict with its run
record, which `run_eval.py --model_type peft` loads when that record names the adapter and model it
evaluates (else it merges in memory; SPEC §4.1, `lorasae/saebench/peft_dict.py`).

    python eval/SAE-Bench/get_peft_dict.py
    python eval/SAE-Bench/get_peft_dict.py --model tiny --adapter saved_models/tiny/<sae_tag>/peft_0-3/rank_16

Defaults: Gemma-2-2B, and the adapter `run_eval.py --model_type peft` would merge (the default adapter
of the model's default SAE, `lorasae.store.DEFAULT_ADAPTER_RULE`: for Gemma, train_sae.py's default expansion_8_L0_64 at layer 12, whose
rank-64 adapter on layers 0-25 is the original's), saved to
eval/SAE-Bench/peft_dicts/<model>_<sae_tag>_peft_<a>-<b>_rank_<r>.pt.
"""

import sys
from dataclasses import dataclass

from lorasae.core.cli import parse
from lorasae.core.errors import main_guard
from lorasae.saebench.load import save_peft_dict
from lorasae.saebench.peft_dict import DEFAULT_MERGE_DTYPE


@dataclass
class Config:
    """Merge an adapter and save the state dict."""

    model: str = "gemma"
    """Base model: gemma (google/gemma-2-2b), llama, tiny (built-in) or any Hugging Face id or folder."""

    adapter: str | None = None
    """Adapter folder (PEFT format). Default: the default adapter of the model's default SAE (what
    run_eval.py --model_type peft merges; the rule: `lorasae.store.DEFAULT_ADAPTER_RULE`)."""

    output: str | None = None
    """Output file. Default: eval/SAE-Bench/peft_dicts/<model>_<sae_tag>_peft_<a>-<b>_rank_<r>.pt."""

    device: str = "cpu"
    """Device used for merging ('cpu', a GPU index or 'cuda:N')."""

    dtype: str = DEFAULT_MERGE_DTYPE
    """Weights dtype: float32 or bfloat16 (a peft result of a float32 merge keeps the plain name; of
    bfloat16, `__merge-bfloat16`)."""

    overwrite: bool = False
    """Merge again although the output exists with a run record of the same merge (the same model and its
    weights, adapter and its weights, dtype); by default such an identical rerun is skipped, saying so."""


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    config = parse(Config, argv)
    save_peft_dict(config.model, config.adapter, config.output, config.device, config.dtype, config.overwrite)


if __name__ == "__main__":
    sys.exit(cli())
