"""Which SAE(s) and adapter a benchmark run uses (`resolve_pairing`), so that the four results files of a
model describe one SAE and the adapter trained for it, and which results slot that pairing writes to
(`run_slot`: the original names for the SAE and adapter picked by default, a folder naming them
otherwise). Every lookup is the store's (`lorasae.store`): the same arguments pick the same SAE and
adapter as SAE-Bench and steering do."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from lorasae.evals.identity import adapter_label, portable_source
from lorasae.lmeval.config import BenchmarkConfig
from lorasae.lmeval.layout import Combination, Slot, results_path
from lorasae.lmeval.plan import Plan, plan_run, result_variant
from lorasae.model.defaults import default_sae_layer
from lorasae.store import (
    AdapterFilter,
    SaeRef,
    adapter_line,
    check_adapter_dir,
    default_adapter,
    external_ref,
    find_adapter,
    find_sae,
    sae_sources_for_adapter,
    source_layer,
)
from lorasae.store.adapter_records import check_pairing
from lorasae.store.adapters import adapter_tags
from lorasae.store.tags import run_tag, sae_id_tag, source_tag

__all__ = ["planned_paths", "resolve_pairing", "run_slot", "sae_id_tag", "sae_label"]

Sources = list[tuple[str, int | None]]

CHOICE_FLAGS = ("sae_source", "sae_layer", "adapter", "rank", "lora_span", "architecture")
"""The flags that choose the SAE and the adapter: without them the script picks the default ones."""


def _pick(config: BenchmarkConfig, plan: Plan, n_layers: int) -> tuple[Sources, Path | None]:
    """The SAE(s) and adapter of `config` (both as found, before the plan's combinations keep what they
    use); no file is written and nothing printed."""
    gemma_scope = config.gemma_scope
    ref: SaeRef | None = None
    if config.sae_source:
        ref = external_ref(config.sae_source, config.sae_layer)
    elif gemma_scope is not None:
        ref = external_ref(str(gemma_scope["sae"]), config.sae_layer or int(gemma_scope["layer"]))
    original = AdapterFilter()
    if gemma_scope is not None and ref is not None and ref.layer is not None:
        # the original's `after` adapters
        original = AdapterFilter(int(gemma_scope["rank"]), f"{ref.layer + 1}-{n_layers - 1}")
    want = config.adapter_filter(original)
    adapter: Path | None = None
    sources: Sources = []
    if config.adapter:
        adapter = check_adapter_dir(config.adapter)
        if ref is None and plan.needs_sae:
            sources = sae_sources_for_adapter(adapter, config.sae_layer)
    elif plan.needs_adapter or plan.needs_sae:
        if ref is None:
            ref = find_sae(plan.model_name, config.sae_layer, architecture=config.architecture)
        if plan.needs_adapter:
            if gemma_scope is not None:  # also the adapters the original repository saved
                tags = adapter_tags(ref, None)
                adapter = find_adapter(plan.model_name, tags, want.rank, want.lora_span)
            else:
                adapter = default_adapter(plan.model_name, ref, want, n_layers)
    if ref is not None and not sources:
        sources = [(ref.source, ref.layer)]
    return sources, adapter


def resolve_pairing(config: BenchmarkConfig, plan: Plan, n_layers: int) -> Plan:
    """Settle which SAE(s) and adapter the combinations use:
    - the Gemma Scope settings (--model_size): the original's SAE and its rank-64 adapter on layers L+1…n-1;
    - --sae_source: that SAE, and its default adapter (`store.DEFAULT_ADAPTER_RULE`);
    - --adapter: that adapter, and the SAE it was trained for (results.csv, else its tag folder);
    - neither: the model's default SAE (the store's `find_sae`) and its default adapter."""
    sources, adapter = _pick(config, plan, n_layers)
    plan.sae_sources = sources if plan.needs_sae else []
    plan.adapter = adapter if plan.needs_adapter else None
    if plan.adapter is not None and sources:  # the adapter only with the SAE weights it was trained on
        note = check_pairing(plan.adapter, [source for source, _ in sources])
        if note:
            print(note)
    print(adapter_line(plan.adapter, "benchmarks"))
    return plan


def sae_label(sources: Sequence[tuple[str, int | None]], n_layers: int) -> str:
    """An SAE run's label in result paths: its tag (`store.run_tag`: `layer_<L>__` in front when spliced
    off the default layer) and `-<digest>` of its sources and layers, so two different SAEs (two folders
    of one tag) never share a label (as `evals.identity.adapter_label` for adapters)."""
    named = [(portable_source(source), _layer(source, layer)) for source, layer in sources]
    tags = [source_tag(source) for source, _ in sources]
    layers = [layer for _, layer in named]
    if all(layer is not None for layer in layers):
        tag = run_tag(tags, [int(x) for x in layers if x is not None], default_sae_layer(n_layers))
    else:
        tag = "+".join(dict.fromkeys(tags))
    digest = hashlib.sha256(json.dumps(named).encode()).hexdigest()[:8]
    return f"{tag}-{digest}"


def _layer(source: str, layer: int | None) -> int | None:
    return layer if layer is not None else source_layer(source)


def _same_saes(a: Sources, b: Sources) -> bool:
    def norm(sources: Sources) -> list[tuple[str, int | None]]:
        return [(portable_source(source), _layer(source, layer)) for source, layer in sources]

    return norm(a) == norm(b)


def _default_pick(
    config: BenchmarkConfig, plan: Plan, n_layers: int, combination: Combination
) -> tuple[Sources, Path | None] | None:
    """What the script picks for `combination` without the SAE- and adapter-choice flags (`CHOICE_FLAGS`);
    None when it finds none (then no result of this model is the default's)."""
    plain = copy.copy(config)
    reference = BenchmarkConfig()
    for name in CHOICE_FLAGS:
        setattr(plain, name, getattr(reference, name))
    try:
        return _pick(plain, dataclasses.replace(plan, combinations=(combination,)), n_layers)
    except FileNotFoundError:  # no default SAE or adapter saved (the store's not-found errors)
        return None


def run_slot(config: BenchmarkConfig, plan: Plan, n_layers: int) -> Slot:
    """The results slot of a resolved plan (`resolve_pairing`): its SAE is named when it is not the one the
    script picks by default, its adapter when it is not the default SAE's default adapter (`Slot`)."""
    sae = adapter = ""
    if plan.sae_sources:
        default = _default_pick(config, plan, n_layers, Combination(peft=False, sae=True))
        if default is None or not _same_saes(plan.sae_sources, default[0]):
            sae = sae_label(plan.sae_sources, n_layers)
    if plan.adapter is not None:
        default = _default_pick(config, plan, n_layers, Combination(peft=True, sae=False))
        if default is None or default[1] is None or Path(default[1]).resolve() != plan.adapter.resolve():
            adapter = adapter_label(plan.adapter)
    return Slot(sae, adapter)


def planned_paths(config: BenchmarkConfig) -> list[Path] | None:
    """The results files a run of `config` writes, in the order of its combinations; None while its SAE
    or adapter cannot be found (e.g. before the demo trained them). Prints nothing."""
    from lorasae.model.load import model_shape

    plan = plan_run(config)
    n_layers = model_shape(plan.model_name).n_layers
    try:
        sources, adapter = _pick(config, plan, n_layers)
    except FileNotFoundError:
        return None
    plan.sae_sources = sources if plan.needs_sae else []
    plan.adapter = adapter if plan.needs_adapter else None
    slot = run_slot(config, plan, n_layers)
    variant = result_variant(config, plan.tasks, plan.model_name)
    return [results_path(plan.model_key, c, variant=variant, slot=slot) for c in plan.combinations]
