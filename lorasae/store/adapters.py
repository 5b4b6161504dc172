"""Finding LoRA adapters (`saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>/`, as
`lorasae/paths.py::adapter_dir` writes them) and the SAEs an adapter was trained for.

The tag an adapter is saved under is the run's SAE tag (`store.tags.run_tag`), so the adapter of an SAE
is found from the SAE's `SaeRef` and the model's default SAE layer. A final SAE and its 100 %
checkpoint hold the same weights, so an adapter trained on either counts for both.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from lorasae.errors import LorasaeError
from lorasae.model_defaults import default_sae_layer
from lorasae.models import model_key, model_shape
from lorasae.paths import results_csv, root, sanitize
from lorasae.store.saes import SaeRef, model_keys, saes_folder
from lorasae.store.tags import layer_from_path, parse_our_tag, single_sae_tag


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


def _matches(path: Path, tags: Sequence[str] | None, rank: int | None, span: str | None) -> bool:
    return (
        (tags is None or path.parent.parent.name in {sanitize(t) for t in tags})
        and (rank is None or path.name == f"rank_{rank}")
        and (span is None or path.parent.name == f"peft_{span}")
    )


def _span_width(path: Path) -> int:
    m = re.fullmatch(r"peft_(\d+)-(\d+)", path.parent.name)
    return int(m.group(2)) - int(m.group(1)) + 1 if m else 0


def _rank(path: Path) -> int:
    m = re.fullmatch(r"rank_(\d+)", path.name)
    return int(m.group(1)) if m else 0


def _preference(path: Path) -> tuple[int, int, float]:
    """Among matching adapters: the widest layer span (the paper adapts every layer; a one-layer or
    `after` adapter is an experiment's), then the highest rank, then the newest."""
    return _span_width(path), _rank(path), (path / "adapter_config.json").stat().st_mtime


def find_adapter(
    model: str,
    sae_tag: str | Sequence[str] | None = None,
    rank: int | None = None,
    lora_span: str | None = None,
    base: Path | None = None,
) -> Path:
    """The saved adapter of `model` (under any of its names) for any of the SAE tags, of the rank and layer
    span (`<a>-<b>`) when given; among several, the widest span, then the highest rank, then the newest.
    `AdapterNotFoundError` listing what exists otherwise."""
    tags = [sae_tag] if isinstance(sae_tag, str) else (list(sae_tag) if sae_tag is not None else None)
    found = [p for key in model_keys(model) for p in list_adapters(key, base)]
    matches = [p for p in found if _matches(p, tags, rank, lora_span)]
    if matches:
        return max(matches, key=_preference)
    wanted = ", ".join(
        f"{name}={value}"
        for name, value in (("sae_tag", " or ".join(tags or [])), ("rank", rank), ("span", lora_span))
        if value
    )
    where = adapters_folder(model, base)
    listing = "\n".join(f"  {p.relative_to(p.parents[3])}" for p in found) or "  (none)"
    raise AdapterNotFoundError(
        f"No saved LoRA adapter for model {model_key(model)!r}{' with ' + wanted if wanted else ''} under "
        f"{where}.\nAdapters found:\n{listing}\n"
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


def adapter_for_sae(
    model: str,
    ref: SaeRef,
    rank: int | None = None,
    lora_span: str | None = None,
    n_layers: int | None = None,
    base: Path | None = None,
) -> Path:
    """The adapter train_lora.py saved for this SAE (of a rank and layer span when given; else
    `find_adapter`'s preference: widest span, highest rank, newest)."""
    n_layers = n_layers if n_layers is not None else model_shape(model).n_layers
    return find_adapter(model, adapter_tags(ref, default_sae_layer(n_layers)), rank, lora_span, base)


def resolve_adapter(
    model: str, ref: SaeRef, adapter: str | None = None, rank: int | None = None, lora_span: str | None = None
) -> Path:
    """`adapter` when given (checked to hold a PEFT adapter), else `adapter_for_sae`."""
    if adapter:
        return check_adapter_dir(adapter)
    return adapter_for_sae(model, ref, rank, lora_span)


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


def _csv_sources(adapter: Path, base: Path | None) -> list[tuple[str, int | None]]:
    """From the adapter's newest row in `data/results.csv`."""
    from lorasae.layer_spec import parse_layer_spec

    path = results_csv(base)
    if not path.exists():
        return []
    model, tag = adapter.parents[2].name, adapter.parent.parent.name
    span, rank = adapter.parent.name.removeprefix("peft_"), adapter.name

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


def sae_sources_for_adapter(
    adapter: Path, layer: int | None = None, base: Path | None = None
) -> list[tuple[str, int | None]]:
    """The SAE(s) an adapter `saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>/` was trained for:
    its row in results.csv, else the SAE folder named by its tag under `saved_saes/<model>/`."""
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
