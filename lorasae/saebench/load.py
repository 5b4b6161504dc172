"""Loading what is evaluated: the base or LoRA-merged model and the SAE (`load_for_eval`, through the
store: `lorasae.store`), and the SAE's identity (`sae_identifier`).

Also `get_peft_dict.py`'s logic: merge a saved adapter into the base weights and save the full state dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasae.core.atomic import atomic_save_file
from lorasae.core.runtime import parse_device
from lorasae.model.load import load_model, model_shape
from lorasae.saebench.args import MODEL_TYPES, SaeBenchArgs, peft_dict_path
from lorasae.saebench.peft_dict import choose_peft_dict, merge_dtype
from lorasae.store import SaeRef, adapter_line, chosen_sae, load_bundle, resolve_adapter, resolve_sae

# --- model, SAE, adapter --------------------------------------------------------------------------


def default_adapter(model_name: str, ref: SaeRef, adapter: str | None = None) -> Path:
    """The adapter `--model_type peft` merges: `adapter` when given, else the store's default adapter of the
    SAE (`store.DEFAULT_ADAPTER_RULE`)."""
    try:
        return resolve_adapter(model_name, ref, adapter)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}\n`run_eval.py --model_type peft` evaluates the SAE on the model with its LoRA adapter "
            f"merged in: train one with `python train_lora.py --model_type {model_name} --sae_layer <L> "
            "--rank <r> --save_model`, or pass --adapter."
        ) from None


def merged_model(model: nn.Module, adapter: Path, peft_dict: Path | None) -> tuple[nn.Module, str]:
    """The model with the adapter merged in: from a saved merged state dict when given, else merged now."""
    if peft_dict is not None:
        state = torch.load(peft_dict, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied embeddings
        if missing or unexpected:
            raise ValueError(
                f"{peft_dict} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                "regenerate it with get_peft_dict.py."
            )
        return model.eval(), f"merged state dict {peft_dict}"
    from lorasae.model.adapters import merge_adapter

    return merge_adapter(model, adapter).eval(), f"adapter {adapter} (merged in memory)"


def save_peft_dict(model_name: str, adapter: str | Path | None, output: str | Path | None, device: Any = "cpu",
                   dtype: str = "float32", overwrite: bool = False) -> Path:  # fmt: skip
    """`get_peft_dict.py`: merge the adapter into the base weights and save the full state dict, with a run
    record (`peft_dict.peft_dict_identity`); an identical rerun (the file exists with a record of the same model,
    adapter and dtype) is skipped, saying so, unless `overwrite`."""
    from lorasae.evals.identity import done_already, write_eval_record
    from lorasae.model.adapters import merge_adapter
    from lorasae.saebench.peft_dict import PEFT_DICT_KIND, peft_dict_identity

    adapter = Path(adapter) if adapter else default_adapter(model_name, resolve_sae(model_name))
    out = Path(output) if output else peft_dict_path(model_name, adapter)
    identity = peft_dict_identity(model_name, adapter, dtype)
    if done_already("peft dict", out, identity, overwrite):
        return out
    model, _ = load_model(model_name, parse_device(device), dtype)
    merged = merge_adapter(model, adapter)
    state = {k: v.detach().cpu() for k, v in merged.state_dict().items()}
    atomic_save_file(out, lambda tmp: torch.save(state, tmp))
    write_eval_record(out, PEFT_DICT_KIND, identity)
    print(f"Merged {adapter} into {model_name}: {len(state)} tensors saved to {out}")
    return out


@dataclass
class Loaded:
    model: nn.Module
    tokenizer: Any
    sae: Any
    layer: int
    sae_source: str
    description: str
    sae_tag: str = ""
    adapter: Path | None = None
    peft_dict: Path | None = None  # the merged state dict loaded (None: merged in memory, or base)
    merge_dtype: str | None = None  # the dtype the adapter was merged in (None: base)


def load_for_eval(args: SaeBenchArgs) -> Loaded:
    """Load the model (merged for peft), its tokenizer and the SAE named by `args`, through the store."""
    if args.model_variant not in MODEL_TYPES:
        raise ValueError(
            f"--model_variant must be one of {MODEL_TYPES} (the model to evaluate on), got "
            f"{args.model_variant!r}"
        )
    ref = chosen_sae(args)
    if ref.layer is not None:
        from lorasae.model.load import check_layer

        check_layer(model_shape(args.model_name), ref.layer)
    adapter = default_adapter(args.model_name, ref, args.adapter) if args.model_variant == "peft" else None
    print(adapter_line(adapter, f"SAE-Bench {args.model_variant}"))
    peft_dict, merged_in = None, None
    if adapter is not None:  # by the merged file's run record, before anything loads
        default = peft_dict_path(args.model_name, adapter)
        peft_dict = choose_peft_dict(args.model_name, adapter, ref.source, args.peft_dict, default)
    bundle = load_bundle(args.model_name, [ref], device=parse_device(args.device), dtype=args.dtype)
    model, description = bundle.model, "base model"
    if adapter is not None:
        merged_in = merge_dtype(peft_dict) if peft_dict is not None else dtype_name(model)
        model, description = merged_model(model, adapter, peft_dict)
    model.requires_grad_(False)
    return Loaded(
        model, bundle.tokenizer, bundle.sae, bundle.layer, ref.source, description, ref.tag, adapter,
        peft_dict, merged_in,
    )  # fmt: skip


def dtype_name(model: nn.Module) -> str:
    """The dtype of the model's weights as flags spell it (`float32`, `bfloat16`)."""
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def sae_identifier(source: str) -> tuple[str, str | None]:
    """(sae_lens_id, sae_lens_release_id): a sae-lens `release/sae_id` splits in two; a folder is its own id."""
    if Path(source).exists() or "/" not in source:
        return source, None
    release, sae_id = source.split("/", 1)
    return sae_id, release
