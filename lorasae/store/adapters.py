"""Finding LoRA adapters (`saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>[__<variant>]/`, as
`lorasae/paths.py::adapter_dir` writes them) and the SAEs an adapter was trained for. What an adapter is
(SAE tag, rank, layers, SAEs) is read from its run record (`store.adapter_records`), not its folder names.

The tag an adapter is saved under is the run's SAE tag (`store.tags.run_tag`), so the adapter of an SAE
is found from the SAE's `SaeRef` and the model's default SAE layer. A final SAE and its 100 %
checkpoint hold the same weights, so an adapter trained on either counts for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lorasae.errors import LorasaeError
from lorasae.model_defaults import default_sae_layer
from lorasae.models import model_key, model_shape
from lorasae.paths import root, sanitize
from lorasae.store.adapter_choice import AdapterFilter, own_record, preference, run_completed
from lorasae.store.saes import SaeRef, model_keys
from lorasae.store.tags import parse_our_tag, single_sae_tag


class AdapterNotFoundError(LorasaeError, FileNotFoundError):
    """No saved adapter matches; the message lists the adapters that exist and how to train one."""


def adapters_folder(model: str, base: Path | None = None) -> Path:
    return (Path(base) if base is not None else root()) / "saved_models" / sanitize(model_key(model))


def list_adapters(model: str, base: Path | None = None) -> list[Path]:
    """Every saved adapter folder of `model`."""
    folder = adapters_folder(model, base)
    if not folder.is_dir():
        return []
    return sorted(p.parent for p in folder.glob("*/peft_*/rank_*/adapter_config.json"))


def _identity(path: Path) -> dict:
    """The adapter's identity from its run record (inferred once for a record-less one)."""
    from lorasae.store.adapter_records import adapter_record

    return adapter_record(path).identity


def _span(path: Path) -> str | None:
    layers = _identity(path).get("lora_layers") or []
    return f"{min(layers)}-{max(layers)}" if layers else None


def _matches(path: Path, tags: Sequence[str] | None, rank: int | None, span: str | None) -> bool:
    """By the adapter's record: its SAE tag, rank and layer span (not its folder names)."""
    identity = _identity(path)
    tag = identity.get("sae_tag") or path.parent.parent.name
    return (
        (tags is None or sanitize(tag) in {sanitize(t) for t in tags})
        and (rank is None or identity.get("rank") == rank)
        and (span is None or _span(path) == span)
    )


def _trained_on(path: Path, sae_digest: str | None) -> bool:
    """The adapter's record names these SAE weights (or names none: a record inferred without them)."""
    digests = [d for d in _identity(path).get("sae_weights_digests") or [] if d]
    return sae_digest is None or not digests or sae_digest in digests


def find_adapter(
    model: str,
    sae_tag: str | Sequence[str] | None = None,
    rank: int | None = None,
    lora_span: str | None = None,
    base: Path | None = None,
    num_examples: int | None = None,
    sae_digest: str | None = None,
) -> Path:
    """The saved adapter of `model` (under any of its names) for any of the SAE tags, of the rank, layer
    span (`<a>-<b>`) and example count when given, trained on the SAE weights with digest `sae_digest`
    when given (all read from the adapters' run records), by `adapter_choice.DEFAULT_ADAPTER_RULE`:
    completed runs first (record-less adapters only when none matches), then `adapter_choice.preference`.
    `AdapterNotFoundError` listing what exists otherwise; adapters of the tags trained only on other
    weights are returned for the pairing check to refuse (`adapter_records.check_pairing`)."""
    tags = [sae_tag] if isinstance(sae_tag, str) else (list(sae_tag) if sae_tag is not None else None)
    found = [p for key in model_keys(model) for p in list_adapters(key, base)]
    matches = [
        p
        for p in found
        if _matches(p, tags, rank, lora_span)
        and (num_examples is None or _identity(p).get("num_train_examples") == num_examples)
    ]
    paired = [p for p in matches if _trained_on(p, sae_digest)]
    completed = [p for p in paired if run_completed(p)]
    recordless = [p for p in paired if own_record(p) is None]
    other_weights = [p for p in matches if p not in paired]  # returned for the pairing check to refuse
    for tier in (completed, recordless, other_weights):
        if tier:
            return max(tier, key=lambda p: preference(p, _identity(p)))
    wanted = ", ".join(
        f"{name}={value}"
        for name, value in (
            ("sae_tag", " or ".join(tags or [])),
            ("rank", rank),
            ("span", lora_span),
            ("examples", num_examples),
        )
        if value
    )
    where = adapters_folder(model, base)
    listing = "\n".join(f"  {p.relative_to(p.parents[3])}" for p in found) or "  (none)"
    unfinished = [p for p in paired if p not in completed and p not in recordless]
    why = (
        f"\n{len(unfinished)} match but their LoRA run did not complete (no CE_increase run record with the "
        "adapter's identity): rerun it."
        if unfinished
        else ""
    )
    raise AdapterNotFoundError(
        f"No saved LoRA adapter for model {model_key(model)!r}{' with ' + wanted if wanted else ''} under "
        f"{where}.\nAdapters found:\n{listing}{why}\n"
        "Train one with `python train_lora.py --model_type <model> --sae_layer <L> --rank <r> --save_model`."
    )


def adapter_tags(ref: SaeRef, default_layer: int | None) -> list[str]:
    """The tags train_lora.py may have saved this SAE's adapters under (final SAE ⇔ its 100 % checkpoint;
    the Gemma Scope adapters of the original repository use the sae_id with `_` for `/`)."""
    from lorasae.store.tags import sae_id_tag

    ours = parse_our_tag(ref.tag)
    tags = [ref.tag]
    if ours is not None and ours.pct is None:
        tags.append(f"{ref.tag}-100pct")
    elif ours is not None and ours.pct == 100:
        tags.append(ours.family)
    if not Path(ref.source).exists() and "/" in ref.source:
        tags.append(sae_id_tag(ref.source))
    return [single_sae_tag(t, ref.layer, default_layer) for t in tags]


def default_adapter(
    model: str,
    ref: SaeRef,
    want: AdapterFilter = AdapterFilter(),
    n_layers: int | None = None,
    base: Path | None = None,
) -> Path:
    """The default adapter of the SAE `ref` (`adapter_choice.DEFAULT_ADAPTER_RULE`, the one rule every eval
    uses): of the tags train_lora.py saves its adapters under, matching `want`, trained on the SAE's
    weights as they are now (its weights digest, when it is a local folder)."""
    from lorasae.fingerprint import weights_digest

    n_layers = n_layers if n_layers is not None else model_shape(model).n_layers
    tags = adapter_tags(ref, default_sae_layer(n_layers))
    digest = weights_digest(ref.source) if Path(ref.source).exists() else None
    return find_adapter(model, tags, want.rank, want.lora_span, base, want.num_examples, sae_digest=digest)


def resolve_adapter(
    model: str, ref: SaeRef, adapter: str | None = None, want: AdapterFilter = AdapterFilter()
) -> Path:
    """`adapter` when given (checked to hold a PEFT adapter), else `default_adapter`; either way checked
    to have been trained on the SAE's weights as they are now (`adapter_records.check_pairing`: refused
    otherwise)."""
    from lorasae.store.adapter_records import check_pairing

    path = check_adapter_dir(adapter) if adapter else default_adapter(model, ref, want)
    note = check_pairing(path, [ref.source])
    if note:
        print(note)
    return path


def check_adapter_dir(adapter: str | Path) -> Path:
    """The folder, if it holds a PEFT adapter; `AdapterNotFoundError` saying what to pass otherwise."""
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise AdapterNotFoundError(
            f"{path} holds no PEFT adapter (adapter_config.json missing); pass the folder train_lora.py "
            "--save_model wrote (saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>/)."
        )
    return path


# --- the SAEs an adapter was trained for ----------------------------------------------------------


def sae_sources_for_adapter(
    adapter: Path, layer: int | None = None, base: Path | None = None, use_record: bool = True
) -> list[tuple[str, int | None]]:
    """The SAE(s) an adapter was trained for: its run record's, else (a record-less adapter in the layout
    `saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>/`) its row in results.csv, else the SAE folder
    named by its tag under `saved_saes/<model>/`."""
    from lorasae.store.adapter_records import legacy_sae_sources

    if use_record:
        from lorasae.paths import from_portable
        from lorasae.store.adapter_records import adapter_record

        identity = adapter_record(adapter, base).identity
        sources = identity.get("sae_sources") or []
        layers = identity.get("sae_layers") or [None] * len(sources)
        if sources and len(layers) == len(sources):
            return [
                (str(from_portable(s)) if from_portable(s).exists() else s, x)
                for s, x in zip(sources, layers)
            ]
    return legacy_sae_sources(adapter, layer, base)
