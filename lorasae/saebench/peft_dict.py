"""Merged state dicts (`get_peft_dict.py`'s `.pt` files) and the rule by which `run_eval.py --model_variant
peft` uses one (issue 25): by its run record, never by its name or modification time.

A merged file's record (`peft_dict_identity`) names the model and its weights, the adapter (its path, its run
record's identity and its weights files' digests), the SAE(s) the adapter was trained on and the merge dtype.
The eval uses a merged file only when that record names exactly the adapter it resolved, the model's weights
as they are, and an SAE whose weights are the SAE being evaluated (`mismatch`); otherwise it merges the
adapter in memory, saying why, or — for a file passed with `--peft_dict` — refuses in one line. The merge
dtype (the file's, or the model's own for an in-memory merge) is part of the result's identity and, when not
float32 (get_peft_dict.py's default), of its slot name (`merge_variant`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasae.core.errors import LorasaeError
from lorasae.core.fingerprint import weights_digest
from lorasae.core.paths import portable, settings_variant
from lorasae.core.records import model_weights_digest, read_record
from lorasae.store.adapter_records import adapter_record, adapter_weights_digests

PEFT_DICT_KIND = "peft_dict"


class PeftDictMismatchError(LorasaeError, ValueError):
    """A merged state dict passed with --peft_dict was not merged from the adapter and model evaluated."""


def peft_dict_identity(model_name: str, adapter: Path, dtype: str) -> dict[str, Any]:
    """What decides a merged state dict's bytes and what it may be used with: the model and its weights, the
    adapter (its run record and its weights files' digests), the SAE(s) the adapter was trained on (from the
    adapter's record) and the merge dtype."""
    from lorasae.evals.identity import eval_identity, portable_source

    trained = adapter_record(adapter)
    identity = eval_identity(model_name, [], adapter, {"dtype": dtype})
    return {
        **identity,
        "sae_sources": [portable_source(s) for s in trained.get("sae_sources") or []],
        "sae_weights_digests": list(trained.get("sae_weights_digests") or []),
        "adapter_weights_digests": adapter_weights_digests(adapter),
    }


def mismatch(peft_dict: Path, model_name: str, adapter: Path, sae_source: str) -> str | None:
    """Why the merged file `peft_dict` may not stand for `adapter` merged into `model_name` for an eval of the SAE
    at `sae_source` (None: it may), read from its run record."""
    from lorasae.evals.identity import portable_source
    from lorasae.model.load import model_key
    from lorasae.store.lora_identity import local_model

    record = read_record(peft_dict)
    if record is None or record.kind != PEFT_DICT_KIND:
        return "it has no run record of a merge (made elsewhere or before records)"
    if record.get("adapter") != portable_source(str(adapter)):
        return f"it was merged from another adapter ({record.get('adapter')})"
    if record.get("adapter_identity") != adapter_record(adapter).identity_digest or record.get(
        "adapter_weights_digests"
    ) != adapter_weights_digests(adapter):
        return "the adapter's weights changed since it was merged (retrained or replaced)"
    if record.get("model") != model_key(model_name) or record.get(
        "model_weights_digest"
    ) != model_weights_digest(local_model(model_name)):
        return f"it was merged into other model weights ({record.get('model')})"
    trained = [d for d in record.get("sae_weights_digests") or [] if d]
    now = weights_digest(sae_source)
    if trained and now is not None and now not in trained:
        return f"its adapter was trained with other SAE weights than {sae_source} holds"
    return None


def merge_dtype(peft_dict: Path) -> str:
    """The dtype a merged file was merged in (its record's)."""
    record = read_record(peft_dict)
    settings = record.get("settings") if record is not None else None
    return str((settings or {}).get("dtype") or "float32")


def choose_peft_dict(
    model_name: str, adapter: Path, sae_source: str, explicit: str | None, default: Path
) -> Path | None:
    """The merged file a peft eval loads: `explicit` (--peft_dict) when its record fits (`mismatch`), else a
    one-line refusal; without it, the `default` file when it exists and fits, else None (merge the adapter
    in memory; a default file that does not fit is named with the reason)."""
    if explicit:
        path = Path(explicit)
        why = mismatch(path, model_name, adapter, sae_source)
        if why is not None:
            raise PeftDictMismatchError(
                f"--peft_dict {path} does not belong to adapter {adapter}: {why}; regenerate it with "
                f"`python eval/SAE-Bench/get_peft_dict.py --model {model_name} --adapter {adapter} --output "
                f"{path} --overwrite`, or leave --peft_dict out to merge the adapter in memory."
            )
        return path
    if not default.exists():
        return None
    why = mismatch(default, model_name, adapter, sae_source)
    if why is None:
        return default
    print(f"note: {portable(default)} was not used: {why}; merging {adapter} in memory.")
    return None


DEFAULT_MERGE_DTYPE = "float32"
"""get_peft_dict.py's default --dtype: the paper's flow (get_peft_dict.py, then run_eval.py --model_type peft)
merges in float32 on every device, so a float32 merge keeps the plain result name."""


def merge_variant(merged_in: str | None) -> str:
    """The merge dtype as the peft result's slot carries it (`settings_variant`): '' for a float32 merge
    (`DEFAULT_MERGE_DTYPE`: README's get_peft_dict.py file on a GPU, an in-memory merge of the float32 model on
    the CPU), e.g. `merge-bfloat16` otherwise (an in-memory merge into a bfloat16 model, or such a file)."""
    if merged_in is None:
        return ""
    return settings_variant(
        {"merge_dtype": merged_in}, {"merge_dtype": DEFAULT_MERGE_DTYPE}, {"merge_dtype": "merge"}
    )
