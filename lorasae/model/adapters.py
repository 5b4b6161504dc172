"""Saved LoRA adapters (PEFT format) loaded onto a model: as a PeftModel or merged into its weights.

Below the trainer (`lorasae.lora`) and the store: the store and every eval load adapters through here."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from lorasae.core.file_checks import check_saved_folder


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft 0.21 reads a transformers attribute deprecated in v5 (a FutureWarning on every wrap)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def load_peft_model(model: nn.Module, adapter_dir: str | Path, is_trainable: bool = False):
    """Load a saved adapter (PEFT format) onto `model`; returns the PeftModel."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(
            f"{adapter_dir} holds no PEFT adapter (adapter_config.json missing); train one with "
            "`python train_lora.py ... --save_model`."
        )
    check_saved_folder(adapter_dir, ADAPTER_FIX)
    with quiet_peft():
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)


ADAPTER_FIX = "regenerate it: rerun train_lora.py with the flags that made it, --save_model and --overwrite"


def merge_adapter(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """The plain transformers model with the adapter's low-rank update merged into its weights."""
    return load_peft_model(model, adapter_dir).merge_and_unload()
