"""What an adapter is, read from its run record (`<adapter>/run.json`, written by train_lora.py inside the
adapter folder in the same rename), not from its folder names; and the pairing check every eval makes:
an adapter is used only with the SAE weights it was trained on.

Adapters without a record (made before run records, the original repository's Gemma Scope adapters, a
copied folder) get an inferred record the first time they are used (`adapter_record`): rank and layers
from `adapter_config.json`, the SAE tag from the folder layout, the SAE from results.csv or the tag's SAE
folder, and the digest of that SAE's weights as they are at that first use, so a later retrain is still
caught. Evals accept such an adapter with a printed note.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lorasae.core.errors import LorasaeError
from lorasae.core.fingerprint import file_digest, weights_digest
from lorasae.core.paths import results_csv, sanitize
from lorasae.core.records import ADAPTER_RECORD_KIND, RunRecord, defer_inferred_record, read_record
from lorasae.store.saes import saes_folder
from lorasae.store.tags import layer_from_path

_SPAN = re.compile(r"peft_(\d+)(?:-(\d+))?")
_RANK = re.compile(r"rank_(\d+)(?:__.*)?")


class AdapterPairingError(LorasaeError, ValueError):
    """An adapter would be paired with SAE weights other than those it was trained on."""


def _adapter_config(adapter: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


def _layers(adapter: Path, config: dict[str, Any]) -> list[int]:
    layers = config.get("layers_to_transform")
    if isinstance(layers, int):
        return [layers]
    if isinstance(layers, list) and layers:
        return sorted(int(x) for x in layers)
    m = _SPAN.fullmatch(adapter.parent.name)
    if not m:
        return []
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a
    return list(range(a, b + 1))


def _csv_sources(adapter: Path, base: Path | None) -> list[tuple[str, int | None]]:
    """From the adapter's newest row in `data/results.csv`."""
    from lorasae.core.layer_spec import parse_layer_spec

    path = results_csv(base)
    if not path.exists():
        return []
    model, tag = adapter.parents[2].name, adapter.parent.parent.name
    span, rank = adapter.parent.name.removeprefix("peft_"), adapter.name.split("__")[0]

    def layers(text: str) -> list[int]:
        try:
            return parse_layer_spec(text) if text.strip() else []
        except ValueError:
            return []

    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in reversed(rows):
        lora = layers(row.get("lora_layers", ""))
        if (
            row.get("model") == sanitize(model)
            and sanitize(row.get("sae_tag", "")) == tag
            and f"rank_{row.get('rank')}" == rank
            and lora
            and f"{min(lora)}-{max(lora)}" == span
            and row.get("sae_source")
        ):
            sources = row["sae_source"].split(";")
            sae_layers = layers(row.get("sae_layers", ""))
            paired = sae_layers if len(sae_layers) == len(sources) else [None] * len(sources)
            return list(zip(sources, paired))
    return []


def legacy_sae_sources(
    adapter: Path, layer: int | None = None, base: Path | None = None
) -> list[tuple[str, int | None]]:
    """The SAE(s) of a record-less adapter in the layout `saved_models/<model>/<sae_tag>/peft_<a>-<b>/
    rank_<r>/`: its row in results.csv, else the SAE folder named by its tag under `saved_saes/<model>/`."""
    from_csv = _csv_sources(adapter, base)
    if from_csv:
        return from_csv
    model, tag = adapter.parents[2].name, adapter.parent.parent.name
    folder = saes_folder(model, base)
    found = [
        cfg.parent
        for cfg in folder.glob(f"*/{tag}/model.layers.*/cfg.json")
        if layer is None or layer_from_path(str(cfg.parent)) == layer
    ]
    if len(found) == 1:
        return [(str(found[0]), layer_from_path(str(found[0])))]
    what = "several SAE folders" if found else "no SAE folder"
    raise FileNotFoundError(
        f"The adapter {adapter} was trained for SAE {tag!r}, but {what} under {folder} "
        f"match{'' if found else 'es'} it{' (' + ', '.join(map(str, found)) + ')' if found else ''}: pass "
        "the SAE (--sae_source / --sae) and its layer."
    )


def adapter_weights_digests(adapter: Path) -> list[str]:
    """The digests of the adapter's weights files (`adapter_model.*`), in name order."""
    return [file_digest(w) for w in sorted(Path(adapter).glob("adapter_model.*"))]


def inferred_identity(adapter: Path, base: Path | None = None) -> dict[str, Any]:
    """What can be read about a record-less adapter from the adapter itself and where it lies; its weights
    files' digests among it, so two record-less adapters of the same shape never share an identity (nor the
    eval result slots named after it)."""
    config = _adapter_config(adapter)
    rank = config.get("r")
    if rank is None and (m := _RANK.fullmatch(adapter.name)):
        rank = int(m.group(1))
    try:
        sources = legacy_sae_sources(adapter, base=base)
    except (FileNotFoundError, LorasaeError, IndexError, ValueError):  # no SAE to name: none recorded
        sources = []
    in_layout = bool(_RANK.fullmatch(adapter.name) and _SPAN.fullmatch(adapter.parent.name))
    return {
        "model": adapter.parents[2].name if in_layout and len(adapter.parents) > 2 else None,
        "sae_tag": adapter.parent.parent.name if in_layout else None,
        "lora_layers": _layers(adapter, config),
        "rank": int(rank) if rank is not None else None,
        "num_train_examples": None,
        "sae_sources": [s for s, _ in sources],
        "sae_layers": [layer for _, layer in sources],
        "sae_weights_digests": [weights_digest(s) for s, _ in sources],
        "adapter_weights_digests": adapter_weights_digests(adapter),
        "inferred_from": "adapter_config.json, the folder layout and results.csv, at first use",
    }


def adapter_record(adapter: str | Path, base: Path | None = None) -> RunRecord:
    """The adapter's run record; a record-less adapter gets one inferred at its first use (with the SAE
    digest of that moment), written beside it when that command finishes successfully
    (`lorasae.core.records.defer_inferred_record`; kept in memory when its folder is read-only)."""
    adapter = Path(adapter)
    found = read_record(adapter)
    if found is not None:
        return found
    return defer_inferred_record(adapter, ADAPTER_RECORD_KIND, inferred_identity(adapter, base))


def check_pairing(adapter: str | Path, sae_sources: Sequence[str], base: Path | None = None) -> str:
    """Refuse (one line) an adapter paired with SAE weights other than those it was trained on: each local
    SAE's weights digest must be the one its record names. Returns a note to print for an adapter
    whose record was inferred (accepted), else ''."""
    adapter = Path(adapter)
    record = adapter_record(adapter, base)
    trained = [d for d in record.get("sae_weights_digests") or [] if d]
    for source in sae_sources:
        now = weights_digest(source)
        if now is None or not trained or now in trained:
            continue
        raise AdapterPairingError(
            f"{adapter} was trained with other SAE weights than {source} holds now (digest {now}, trained "
            f"with {', '.join(trained)}; the SAE was retrained or replaced since): retrain the adapter "
            "(train_lora.py --save_model --overwrite) or pass the SAE it was trained on."
        )
    if record.inferred:
        return (
            f"note: {adapter} has no run record of its own (made before run records, or elsewhere); "
            f"accepted with the record inferred at its first use ({record.path})."
        )
    return ""
