"""Which SAE(s) and adapter a benchmark run uses (`resolve_pairing`), so that the four results files of a
model describe one SAE and the adapter trained for it. Every lookup is the store's (`lorasae.store`):
the same arguments pick the same SAE and adapter as SAE-Bench and steering do."""

from __future__ import annotations

from pathlib import Path

from lorasae.lmeval.config import BenchmarkConfig
from lorasae.lmeval.plan import Plan
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
)
from lorasae.store.adapter_records import check_pairing
from lorasae.store.adapters import adapter_tags
from lorasae.store.tags import sae_id_tag

__all__ = ["resolve_pairing", "sae_id_tag"]


def resolve_pairing(config: BenchmarkConfig, plan: Plan, n_layers: int) -> Plan:
    """Settle which SAE(s) and adapter the combinations use:
    - the Gemma Scope settings (--model_size): the original's SAE and its rank-64 adapter on layers L+1…n-1;
    - --sae_source: that SAE, and its default adapter (`store.DEFAULT_ADAPTER_RULE`);
    - --adapter: that adapter, and the SAE it was trained for (results.csv, else its tag folder);
    - neither: the model's default SAE (the store's `find_sae`) and its default adapter."""
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
    sources: list[tuple[str, int | None]] = []
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
    plan.sae_sources = sources if plan.needs_sae else []
    plan.adapter = adapter if plan.needs_adapter else None
    if plan.adapter is not None and sources:  # the adapter only with the SAE weights it was trained on
        note = check_pairing(plan.adapter, [source for source, _ in sources])
        if note:
            print(note)
    print(adapter_line(plan.adapter, "benchmarks"))
    return plan
