"""The read side of `lorasae/core/paths.py`: one place that finds SAEs and adapters, loads them with the model
and checks they fit. Every front end (train_lora, sweep, the demo, SAE-Bench, steering, benchmarks, the
analyses) calls it; none has its own finder, default rule or loader.

- `tags`: what output names say (`parse_sae_tag`, `run_tag`, `source_tag`);
- `saes`: `find_sae` (an eval's SAE: train_sae.py's defaults when not told; `chosen_sae`: from an eval's
  SAE-choice flags, `--architecture` included; `families`: our SAE families by architecture), `our_sae_runs`
  (train_lora.py's runs over our checkpoints), `external_run` (`--sae` sources), all without loading;
- `adapters`: `default_adapter` (the one rule, `adapter_choice.DEFAULT_ADAPTER_RULE`, every eval uses),
  `find_adapter`, `resolve_adapter`, `sae_sources_for_adapter`; `adapter_choice`: the rule's parts and
  `adapter_line` (the line every eval prints about its adapter);
- `load`: `load_saes` (checked `{layer: SAE}`), `load_bundle` (model + tokenizer + SAEs + adapter);
- `sae_records`: an SAE folder's run record (`sae_record`; inferred once for legacy folders), and
  `check_sae_model` (an SAE whose record names another model is refused).
"""

from lorasae.store.adapter_choice import DEFAULT_ADAPTER_RULE, AdapterFilter, adapter_line
from lorasae.store.adapters import (
    AdapterNotFoundError,
    check_adapter_dir,
    default_adapter,
    find_adapter,
    list_adapters,
    resolve_adapter,
    sae_sources_for_adapter,
)
from lorasae.store.load import (
    Bundle,
    SaeMismatchError,
    check_run_layers,
    load_bundle,
    load_saes,
    preflight_saes,
)
from lorasae.store.sae_records import SaeModelMismatchError, check_sae_model, sae_record
from lorasae.store.saes import (
    GEMMA_SCOPE_2B,
    GEMMA_SCOPE_9B,
    SaeRef,
    SaeRun,
    check_architecture,
    chosen_sae,
    external_ref,
    external_run,
    final_saes,
    find_sae,
    list_our_saes,
    model_keys,
    our_sae_runs,
    resolve_sae,
    source_layer,
)
from lorasae.store.tags import parse_our_tag, parse_sae_tag, run_tag, single_sae_tag, source_tag

__all__ = [
    "DEFAULT_ADAPTER_RULE",
    "GEMMA_SCOPE_2B",
    "GEMMA_SCOPE_9B",
    "AdapterFilter",
    "AdapterNotFoundError",
    "Bundle",
    "SaeMismatchError",
    "SaeModelMismatchError",
    "SaeRef",
    "SaeRun",
    "check_architecture",
    "chosen_sae",
    "adapter_line",
    "check_adapter_dir",
    "check_run_layers",
    "check_sae_model",
    "default_adapter",
    "external_ref",
    "external_run",
    "final_saes",
    "find_adapter",
    "find_sae",
    "list_adapters",
    "list_our_saes",
    "load_bundle",
    "load_saes",
    "preflight_saes",
    "model_keys",
    "our_sae_runs",
    "parse_our_tag",
    "parse_sae_tag",
    "resolve_adapter",
    "resolve_sae",
    "run_tag",
    "sae_record",
    "sae_sources_for_adapter",
    "single_sae_tag",
    "source_layer",
    "source_tag",
]
