"""Which SAE(s) and adapter a benchmark run uses (`resolve_pairing`), so that the four results files of a
model describe one SAE and the adapter trained for it: the saved SAEs and adapters of a model (under any
of its names), the SAEs an adapter was trained for (results.csv, else its tag), and loading the SAEs to
splice (`load_spliced_saes`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from lorasae.benchmarks.config import BenchmarkConfig
from lorasae.benchmarks.plan import Plan
from lorasae.models import check_layer, model_key
from lorasae.paths import root, sanitize


def _saved_sae_dirs(model: str, tag: str | None = None, base: Path | None = None) -> list[Path]:
    folder = (Path(base) if base is not None else root()) / "saved_saes" / sanitize(model)
    pattern = f"*/{tag if tag is not None else '*'}/model.layers.*/cfg.json"
    return [cfg.parent for cfg in folder.glob(pattern)]


def find_sae_dir(model: str, layer: int | None = None, base: Path | None = None) -> Path:
    """The newest SAE of `model` under `saved_saes/<model>/` (at `layer` if given): final SAEs before
    percentage checkpoints, TopK ('normal') before e2e. Raises FileNotFoundError naming what to run."""
    found = [
        p for p in _saved_sae_dirs(model, base=base) if layer is None or layer_from_path(str(p)) == layer
    ]
    if not found:
        at_layer = f" at layer {layer}" if layer is not None else ""
        raise FileNotFoundError(
            f"No saved SAE for model {model!r}{at_layer} under "
            f"{(Path(base) if base is not None else root()) / 'saved_saes' / sanitize(model)}. Train one "
            f"with `python train_sae.py --model_type {model} --layer <L> ...`, or pass --sae_source "
            "(a folder or a sae-lens release/sae_id)."
        )

    def preference(path: Path) -> tuple[bool, bool, float]:
        final = not path.parent.name.endswith("pct")
        return final, path.parent.parent.name == "normal", (path / "cfg.json").stat().st_mtime

    return max(found, key=preference)


def _first_sae_dir(keys: Sequence[str], layer: int | None) -> Path:
    errors: list[FileNotFoundError] = []
    for key in keys:
        try:
            return find_sae_dir(key, layer)
        except FileNotFoundError as err:
            errors.append(err)
    raise errors[0]


def _csv_sae_sources(model: str, adapter: Path, base: Path | None = None) -> list[tuple[str, int | None]]:
    """The SAEs an adapter was trained with, from its row in `data/results.csv` (newest row first)."""
    import csv

    from lorasae.paths import results_csv

    path = results_csv(base)
    if not path.exists():
        return []
    tag, span, rank = adapter.parent.parent.name, adapter.parent.name.removeprefix("peft_"), adapter.name
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in reversed(rows):
        lora = [int(x) for x in _expand_layers(row.get("lora_layers", ""))]
        if (
            row.get("model") == sanitize(model)
            and sanitize(row.get("sae_tag", "")) == tag
            and f"rank_{row.get('rank')}" == rank
            and lora
            and f"{min(lora)}-{max(lora)}" == span
            and row.get("sae_source")
        ):
            sources = row["sae_source"].split(";")
            layers = [int(x) for x in _expand_layers(row.get("sae_layers", ""))]
            if len(layers) != len(sources):
                layers_or_none: list[int | None] = [None] * len(sources)
            else:
                layers_or_none = list(layers)
            return list(zip(sources, layers_or_none))
    return []


def _expand_layers(text: str) -> list[int]:
    """`"1,3-5"` → [1, 3, 4, 5]; empty or malformed text → []."""
    from lorasae.lora.adapters import parse_layer_spec

    try:
        return parse_layer_spec(text) if text.strip() else []
    except ValueError:
        return []


def sae_sources_for_adapter(
    adapter: Path, layer: int | None = None, base: Path | None = None
) -> list[tuple[str, int | None]]:
    """The SAE(s) an adapter `saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>/` was trained for:
    its row in results.csv, else the SAE folder named by its tag under `saved_saes/<model>/`."""
    model = adapter.parents[2].name
    from_csv = _csv_sae_sources(model, adapter, base)
    if from_csv:
        return from_csv
    tag = adapter.parent.parent.name
    found = [
        p for p in _saved_sae_dirs(model, tag, base) if layer is None or layer_from_path(str(p)) == layer
    ]
    if len(found) == 1:
        return [(str(found[0]), layer_from_path(str(found[0])))]
    what = "several SAE folders" if found else "no SAE folder"
    raise FileNotFoundError(
        f"The adapter {adapter} was trained for SAE {tag!r}, but {what} under saved_saes/{sanitize(model)}/ "
        f"match{'' if found else 'es'} it{' (' + ', '.join(map(str, found)) + ')' if found else ''}: pass "
        "--sae_source (and --sae_layer)."
    )


def resolve_pairing(config: BenchmarkConfig, plan: Plan, n_layers: int) -> Plan:
    """Settle which SAE(s) and adapter the combinations use, so that the four results files of a model
    describe one SAE and the adapter trained for it:
    - the Gemma Scope settings (--model_size): the original's SAE and its rank-64 adapter on layers L+1…n-1;
    - --sae_source: that SAE, and the newest adapter trained for it;
    - --adapter: that adapter, and the SAE it was trained for (results.csv, else its tag folder);
    - neither: the newest adapter of the model and its SAE, or, with no adapter saved, the newest SAE."""
    from lorasae.lora.sae_refs import source_tag

    keys = model_keys(plan.model_name)
    layer = config.sae_layer
    gemma_scope = config.gemma_scope
    rank = config.rank
    span = None
    sources: list[tuple[str, int | None]] = []
    if config.sae_source or gemma_scope is not None:
        source = config.sae_source or str(gemma_scope["sae"])  # type: ignore[index]
        if layer is None:
            layer = layer_from_path(source)
        if layer is None and gemma_scope is not None and not config.sae_source:
            layer = int(gemma_scope["layer"])
        sources = [(source, layer)]
        if gemma_scope is not None:
            rank = rank if rank is not None else int(gemma_scope["rank"])
            if layer is not None:
                span = f"{layer + 1}-{n_layers - 1}"  # the original's `after` adapters
    adapter: Path | None = None
    if config.adapter:
        adapter = Path(config.adapter).expanduser()
        if not (adapter / "adapter_config.json").exists():
            raise FileNotFoundError(
                f"--adapter {adapter} holds no PEFT adapter (adapter_config.json missing)."
            )
    elif sources:
        if plan.needs_adapter:
            tags: list[str | None] = [source_tag(sources[0][0])]
            if gemma_scope is not None:  # adapters trained by the original repository
                tags.append(sae_id_tag(sources[0][0]))
            adapter = _newest_adapter(keys, tags, rank, span)
    elif plan.needs_adapter or plan.needs_sae:
        try:
            adapter = _newest_adapter(keys, rank=rank)
        except FileNotFoundError:
            if plan.needs_adapter:
                raise
    if not sources and adapter is not None and plan.needs_sae:
        sources = sae_sources_for_adapter(adapter, layer)
    elif not sources and plan.needs_sae:
        found = _first_sae_dir(keys, layer)
        sources = [(str(found), layer_from_path(str(found)))]
    plan.sae_sources = sources if plan.needs_sae else []
    plan.adapter = adapter if plan.needs_adapter else None
    return plan


def model_keys(name: str) -> list[str]:
    """Every short name a model's outputs may be saved under: its own key first, then the registry
    aliases of the same hub model and the hub id's last part (`google/gemma-2-2b`: `gemma-2-2b`, the
    original's folder, and `gemma`, this project's `--model_type gemma`)."""
    from lorasae.models import MODEL_REGISTRY

    target = MODEL_REGISTRY.get(name, name)
    keys = [model_key(name)]
    keys += [model_key(alias) for alias, hub in MODEL_REGISTRY.items() if hub == target]
    if "/" in target and not target.startswith("builtin:"):
        keys.append(model_key(target))
    return list(dict.fromkeys(keys))


def _newest_adapter(
    keys: Sequence[str],
    tags: Sequence[str | None] = (None,),
    rank: int | None = None,
    span: str | None = None,
) -> Path:
    """The newest adapter saved under any of `keys` for any of `tags`; the first lookup's error (which
    lists what exists) when there is none."""
    from lorasae.lora.adapters import find_adapter

    found: list[Path] = []
    first_error: FileNotFoundError | None = None
    for key in keys:
        for tag in tags:
            try:
                found.append(find_adapter(key, sae_tag=tag, rank=rank, lora_span=span))
            except FileNotFoundError as err:
                first_error = first_error or err
    if found:
        return max(found, key=lambda p: (p / "adapter_config.json").stat().st_mtime)
    assert first_error is not None
    raise first_error


def layer_from_path(source: str) -> int | None:
    """`.../model.layers.<L>` → L."""
    from lorasae.lora.sae_refs import layer_from_path as from_path

    return from_path(source)


def sae_id_tag(source: str) -> str:
    """The original repository's adapter tag for a sae-lens release: the sae_id with `_` for `/`
    (`layer_12_width_16k_average_l0_82`)."""
    _release, _, sae_id = source.partition("/")
    return sanitize((sae_id or source).replace("/", "_"))


def load_spliced_saes(
    sources: Sequence[tuple[str, int | None]], model: nn.Module, device: Any
) -> dict[int, Any]:
    """`{layer: SAE}`: each SAE loaded in float32 and frozen; its layer is the given one, else its own."""
    from lorasae.sae.sources import load_sae

    saes: dict[int, Any] = {}
    for source, given in sources:
        sae = load_sae(source, device=device, dtype="float32")
        layer = given if given is not None else getattr(sae, "hook_layer", None)
        if layer is None:
            raise ValueError(f"The SAE {source} does not say which layer it belongs to: pass --sae_layer.")
        check_layer(model, layer)
        if layer in saes:
            raise ValueError(f"Two SAEs for layer {layer}: give one SAE per layer.")
        if hasattr(sae, "requires_grad_"):
            sae.requires_grad_(False)
        if hasattr(sae, "eval"):
            sae.eval()
        saes[layer] = sae
    return saes
