"""`eval/SAE-Bench/run_eval.py` end to end: load the base or LoRA-merged model and the SAE, run the
selected SAEBench-style evals, write one SAEBench JSON per eval under
`eval/SAE-Bench/results/<model>_<base|peft>/<eval>.json`, and print (and plot) base vs peft.

Also `get_peft_dict.py`'s logic: merge a saved adapter into the base weights and save the full state dict.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from simple_parsing import field
from tabulate import tabulate
from torch import nn

from lorasae.atomic import atomic_save_file, read_json
from lorasae.cli import CommonArgs
from lorasae.models import d_model, load_model, model_key, num_layers
from lorasae.paths import eval_dir, plots_dir, root, sanitize
from lorasae.runtime import parse_device, seed_everything, setup_environment
from lorasae.saebench import datasets as data
from lorasae.saebench.absorption import AbsorptionEvalConfig, run_absorption
from lorasae.saebench.autointerp import AutoInterpEvalConfig, run_autointerp
from lorasae.saebench.core import CoreEvalConfig, run_core
from lorasae.saebench.probing import SparseProbingEvalConfig, run_sparse_probing
from lorasae.saebench.schema import write_eval_output
from lorasae.saebench.scr_tpp import ScrAndTppEvalConfig, run_scr, run_tpp

EVALS: tuple[str, ...] = ("core", "sparse_probing", "scr", "tpp", "absorption", "autointerp")
MODEL_TYPES: tuple[str, ...] = ("base", "peft")
GEMMA_SCOPE_DEFAULT = "gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82"
HUB_CORE_DATASET = "Skylion007/openwebtext"  # SAEBench core's default
HUB_AUTOINTERP_DATASET = "monology/pile-uncopyrighted"  # SAEBench autointerp's default


@dataclass
class SaeBenchArgs(CommonArgs):
    """Evaluate an SAE with SAEBench-style evals on the base model or on the LoRA-merged model."""

    model_type: str = field(default="peft", alias=["--MODEL_TYPE"])
    """Which model the SAE is evaluated on: peft (the model with the LoRA adapter merged in) or base."""

    model: str | None = None
    """Model: gemma (google/gemma-2-2b, the original's), llama, tiny (built-in) or any Hugging Face causal LM
    id or local folder. Default: gemma."""

    dataset: str | None = None
    """Text for core and autointerp: 'builtin', a hub dataset or a local txt/jsonl/parquet file or folder.
    Default: builtin for the tiny model, else SAEBench's (openwebtext for core, the Pile for autointerp)."""

    sae: str | None = None
    """SAE: a folder (ours, SAELens or sparsify format) or a sae-lens release `release/sae_id`. Default: the
    newest final TopK SAE saved for the model under saved_saes/ (Gemma: Gemma Scope layer 12 if none)."""

    layer: int | None = None
    """Layer whose output the SAE reads. Default: the SAE's hook layer."""

    adapter: str | None = None
    """LoRA adapter folder (PEFT format) for --model_type peft. Default: the newest adapter saved for the SAE
    (`find_adapter`)."""

    peft_dict: str | None = None
    """Merged state dict written by get_peft_dict.py, loaded instead of merging the adapter in memory.
    Default: eval/SAE-Bench/peft_dicts/<name of the adapter>.pt when it exists and is newer than the adapter."""

    evals: str = "all"
    """Comma-separated evals: core, sparse_probing, scr, tpp, absorption, autointerp (or all)."""

    size: str = "auto"
    """Eval sizes: full (SAEBench's defaults), small (seconds to a minute each on a CPU), or auto (small for the
    built-in model or on a CPU, full otherwise)."""

    labelled_data: str = "auto"
    """Labelled text for probing, SCR and TPP: hub (SAEBench's bias-in-bios, Amazon reviews, ...), builtin
    (the built-in world's documents) or auto (builtin for the built-in model or dataset)."""

    llm_batch_size: int | None = None
    """Sequences per model forward pass (default: 32 full, 16 small)."""

    train_set_size: int | None = None
    """Probe training texts per dataset for sparse probing, SCR and TPP (SAEBench: 4000; small: 200)."""

    test_set_size: int | None = None
    """Probe test texts per dataset for sparse probing, SCR and TPP (SAEBench: 1000; small: 100)."""

    judge_model: str = "gpt-4o-mini"
    """Autointerp judge model (any OpenAI-compatible chat model)."""

    judge_base_url: str | None = None
    """Base URL of the OpenAI-compatible endpoint (default: OpenAI's; also $OPENAI_BASE_URL)."""

    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the judge's API key; autointerp is skipped when it is unset."""

    autointerp_latents: int | None = None
    """Latents explained and scored by autointerp (default: SAEBench's 1000 full, 20 small)."""

    output_dir: str | None = None
    """Results folder (default: eval/SAE-Bench/results/)."""

    plot: bool = True
    """Write the base-vs-peft figure to plots/ when both results exist."""

    @property
    def model_name(self) -> str:
        return self.model or "gemma"


# --- paths ----------------------------------------------------------------------------------------


def results_root(output_dir: str | Path | None = None) -> Path:
    return Path(output_dir) if output_dir else eval_dir("SAE-Bench") / "results"


def results_dir(model_name: str, model_type: str, output_dir: str | Path | None = None) -> Path:
    """`eval/SAE-Bench/results/<model>_<base|peft>/`"""
    return results_root(output_dir) / f"{sanitize(model_key(model_name))}_{model_type}"


def result_path(
    model_name: str, model_type: str, eval_name: str, output_dir: str | Path | None = None
) -> Path:
    return results_dir(model_name, model_type, output_dir) / f"{eval_name}.json"


def peft_dicts_dir(base: Path | None = None) -> Path:
    return eval_dir("SAE-Bench", base) / "peft_dicts"


def peft_dict_path(model_name: str, adapter: str | Path, base: Path | None = None) -> Path:
    """`eval/SAE-Bench/peft_dicts/<model>_<sae_tag>_peft_<a>-<b>_rank_<r>.pt` (the original wrote
    `eval/SAE-Bench/gemma_peft_0-25_rank_64.pt`)."""
    adapter = Path(adapter)
    parts = [sanitize(model_key(model_name))]
    if adapter.parent.name.startswith("peft_"):
        parts += [sanitize(adapter.parent.parent.name), adapter.parent.name]
    parts.append(adapter.name)
    return peft_dicts_dir(base) / ("_".join(parts) + ".pt")


# --- model, SAE, adapter --------------------------------------------------------------------------


def default_sae_source(model_name: str) -> str:
    """The newest final TopK SAE saved for the model; Gemma Scope layer 12 for Gemma when none is saved."""
    key = model_key(model_name)
    folder = root() / "saved_saes" / sanitize(key) / "normal"
    found = [
        p
        for p in folder.glob("*/model.layers.*")
        if (p / "cfg.json").exists() and not p.parent.name.endswith("pct")
    ]
    if found:
        return str(max(found, key=lambda p: (p / "cfg.json").stat().st_mtime))
    if key == "gemma":
        return GEMMA_SCOPE_DEFAULT
    raise FileNotFoundError(
        f"No SAE saved for model {key!r} under {folder}. Train one first "
        f"(`python train_sae.py --model_type {model_name} ...`) or pass --sae."
    )


def sae_hook_layer(sae: Any) -> int | None:
    layer = getattr(sae, "hook_layer", None)
    if layer is None:
        cfg = getattr(sae, "cfg", None)
        layer = getattr(cfg, "hook_layer", None)
        if layer is None:
            layer = getattr(getattr(cfg, "metadata", None), "hook_layer", None)
    return None if layer is None else int(layer)


def default_adapter(model_name: str, sae_source: str) -> Path:
    """The newest adapter saved for this SAE (`find_adapter`); for a final SAE, one trained on its 100%
    checkpoint also counts (the weights are the same)."""
    from lorasae.lora.adapters import find_adapter
    from lorasae.lora.sae_refs import source_tag

    tag = source_tag(sae_source)
    tags = [tag] if re.search(r"-\d+pct$", tag) else [tag, f"{tag}-100pct"]
    error: FileNotFoundError | None = None
    for candidate in tags:
        try:
            return find_adapter(model_key(model_name), sae_tag=candidate)
        except FileNotFoundError as err:
            error = err
    raise FileNotFoundError(
        f"{error}\n`run_eval.py --model_type peft` evaluates the SAE on the model with its LoRA adapter merged "
        f"in: train one with `python train_lora.py --model_type {model_name} --sae_layer <L> --rank <r> "
        "--save_model`, or pass --adapter."
    )


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
    from lorasae.lora.adapters import merge_adapter

    return merge_adapter(model, adapter).eval(), f"adapter {adapter} (merged in memory)"


def save_peft_dict(model_name: str, adapter: str | Path | None, output: str | Path | None, device: Any = "cpu",
                   dtype: str = "float32") -> Path:  # fmt: skip
    """`get_peft_dict.py`: merge the adapter into the base weights and save the full state dict."""
    from lorasae.lora.adapters import find_adapter, merge_adapter

    adapter = Path(adapter) if adapter else find_adapter(model_key(model_name))
    out = Path(output) if output else peft_dict_path(model_name, adapter)
    model, _ = load_model(model_name, parse_device(device), dtype)
    merged = merge_adapter(model, adapter)
    state = {k: v.detach().cpu() for k, v in merged.state_dict().items()}
    atomic_save_file(out, lambda tmp: torch.save(state, tmp))
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


def load_for_eval(args: SaeBenchArgs) -> Loaded:
    """Load the model (merged for peft), its tokenizer and the SAE named by `args`."""
    from lorasae.sae import load_sae

    if args.model_type not in MODEL_TYPES:
        raise ValueError(
            f"--model_type must be one of {MODEL_TYPES} (the model to evaluate on), got {args.model_type!r}"
        )
    device = parse_device(args.device)
    model, tokenizer = load_model(args.model_name, device, args.dtype)
    source = args.sae or default_sae_source(args.model_name)
    sae = load_sae(source, device=device, dtype=torch.float32)
    layer = args.layer if args.layer is not None else sae_hook_layer(sae)
    if layer is None:
        raise ValueError(f"The SAE {source} does not say which layer it reads: pass --layer.")
    if int(sae.W_dec.shape[1]) != d_model(model):
        raise ValueError(
            f"The SAE reads {int(sae.W_dec.shape[1])}-dimensional activations but {args.model_name} has "
            f"d_model {d_model(model)}: it was trained for another model."
        )
    description = "base model"
    if args.model_type == "peft":
        adapter = Path(args.adapter) if args.adapter else default_adapter(args.model_name, source)
        peft_dict = Path(args.peft_dict) if args.peft_dict else None
        if peft_dict is None:
            candidate = peft_dict_path(args.model_name, adapter)
            weights = [p for p in adapter.glob("adapter_model.*")]
            if candidate.exists() and all(candidate.stat().st_mtime >= w.stat().st_mtime for w in weights):
                peft_dict = candidate
        model, description = merged_model(model, adapter, peft_dict)
    model.requires_grad_(False)
    return Loaded(model, tokenizer, sae, layer, source, description)


# --- configs --------------------------------------------------------------------------------------


def small_sizes(args: SaeBenchArgs, device: torch.device) -> bool:
    if args.size not in ("auto", "full", "small"):
        raise ValueError(f"--size must be auto, full or small, got {args.size!r}")
    if args.size == "auto":
        return args.model_name == "tiny" or device.type == "cpu"
    return args.size == "small"


def use_builtin_labels(args: SaeBenchArgs) -> bool:
    if args.labelled_data not in ("auto", "hub", "builtin"):
        raise ValueError(f"--labelled_data must be auto, hub or builtin, got {args.labelled_data!r}")
    if args.labelled_data == "auto":
        return args.model_name == "tiny" or args.dataset == "builtin"
    return args.labelled_data == "builtin"


def selected_evals(spec: str) -> list[str]:
    names = list(EVALS) if spec.strip() in ("", "all") else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in EVALS]
    if unknown:
        raise ValueError(f"unknown evals {unknown}; choose from {', '.join(EVALS)} or all")
    return names


def _context(model: nn.Module, wanted: int) -> int:
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return min(wanted, int(limit)) if limit else wanted


@dataclass
class EvalPlan:
    """Configs and data sources of one run."""

    core: CoreEvalConfig
    probing: SparseProbingEvalConfig
    scr_tpp: ScrAndTppEvalConfig
    absorption: AbsorptionEvalConfig
    autointerp: AutoInterpEvalConfig
    builtin: bool
    core_dataset: str
    autointerp_dataset: str


def make_plan(args: SaeBenchArgs, model: nn.Module, device: torch.device) -> EvalPlan:
    small = small_sizes(args, device)
    builtin = use_builtin_labels(args)
    name = args.model_name
    bs = args.llm_batch_size or (16 if small else 32)
    ctx = _context(model, 128)
    default_text = "builtin" if name == "tiny" else None
    core_dataset = args.dataset or default_text or HUB_CORE_DATASET
    autointerp_dataset = args.dataset or default_text or HUB_AUTOINTERP_DATASET
    core = CoreEvalConfig(
        model_name=name,
        batch_size_prompts=8 if small else 16,
        n_eval_reconstruction_batches=4 if small else 200,
        n_eval_sparsity_variance_batches=4 if small else 2000,
        dataset=core_dataset,
        context_size=ctx,
        llm_dtype=args.dtype,
    )
    train_size = args.train_set_size or (200 if small else 4000)
    test_size = args.test_set_size or (100 if small else 1000)
    probing = SparseProbingEvalConfig(
        random_seed=args.seed,
        probe_train_set_size=train_size,
        probe_test_set_size=test_size,
        context_length=ctx,
        llm_batch_size=bs,
        llm_dtype=args.dtype,
        model_name=name,
    )
    scr_tpp = ScrAndTppEvalConfig(
        random_seed=args.seed,
        train_set_size=train_size,
        test_set_size=test_size,
        context_length=ctx,
        llm_batch_size=bs,
        llm_dtype=args.dtype,
        model_name=name,
    )
    absorption = AbsorptionEvalConfig(
        random_seed=args.seed,
        llm_batch_size=bs,
        llm_dtype=args.dtype,
        max_vocab=2000 if small else None,
        gt_probe_batch_size=128 if small else 4096,
        model_name=name,
    )
    autointerp = AutoInterpEvalConfig(
        model_name=name,
        n_latents=args.autointerp_latents or (20 if small else 1000),
        random_seed=args.seed,
        dataset_name=autointerp_dataset,
        llm_context_size=ctx,
        llm_batch_size=bs,
        llm_dtype=args.dtype,
        total_tokens=32_768 if small else 2_000_000,
        judge_model=args.judge_model,
        base_url=args.judge_base_url,
        api_key_env=args.api_key_env,
    )
    return EvalPlan(core, probing, scr_tpp, absorption, autointerp, builtin, core_dataset, autointerp_dataset)


# --- running --------------------------------------------------------------------------------------


def run_evals(
    loaded: Loaded,
    plan: EvalPlan,
    evals: Sequence[str],
    out_dir: Path,
    seed: int = 42,
    world_seed: int = 0,
    documents: Any = None,
) -> dict[str, Path | None]:
    """Run `evals` and write each result; returns {eval: path written (None when skipped)}.
    `documents` replaces the built-in corpus (tests)."""
    model, tok, sae, layer = loaded.model, loaded.tokenizer, loaded.sae, loaded.layer
    sae_id, release = sae_identifier(loaded.sae_source)

    def probing_data() -> dict[str, data.TrainTest]:
        cfg = plan.probing
        if plan.builtin:
            return data.builtin_probing_datasets(
                cfg.probe_train_set_size, cfg.probe_test_set_size, seed, world_seed, documents
            )
        return {
            n: data.hub_probing_dataset(n, cfg.probe_train_set_size, cfg.probe_test_set_size, seed)
            for n in data.HUB_SPARSE_PROBING_DATASETS
        }

    def scr_data() -> dict[str, data.TrainTest]:
        cfg = plan.scr_tpp
        if plan.builtin:
            return data.builtin_scr_runs(cfg.train_set_size, cfg.test_set_size, seed, world_seed, documents)
        runs: dict[str, data.TrainTest] = {}
        for name in data.SCR_COLUMN1_VALS:
            runs |= data.hub_scr_runs(name, cfg.train_set_size, cfg.test_set_size, seed)
        return runs

    def tpp_data() -> dict[str, data.TrainTest]:
        cfg = plan.scr_tpp
        if plan.builtin:
            return data.builtin_tpp_datasets(
                cfg.train_set_size, cfg.test_set_size, seed, world_seed, documents
            )
        return {
            n: data.hub_probing_dataset(n, cfg.train_set_size, cfg.test_set_size, seed)
            for n in data.HUB_TPP_DATASETS
        }

    def core() -> dict[str, Any]:
        cfg = plan.core
        n = cfg.batch_size_prompts * max(
            cfg.n_eval_reconstruction_batches, cfg.n_eval_sparsity_variance_batches
        )
        tokens = data.token_chunks(plan.core_dataset, tok, cfg.context_size, n, seed)
        return run_core(model, tok, sae, layer, tokens, cfg, sae_id, release)

    def autointerp() -> dict[str, Any] | None:
        cfg = plan.autointerp
        n = -(-cfg.total_tokens // cfg.llm_context_size)
        tokens = data.token_chunks(plan.autointerp_dataset, tok, cfg.llm_context_size, n, seed + 1)
        return run_autointerp(model, tok, sae, layer, tokens, cfg, sae_id, release)

    runners: dict[str, Callable[[], dict[str, Any] | None]] = {
        "core": core,
        "sparse_probing": lambda: run_sparse_probing(
            model, tok, sae, layer, probing_data(), plan.probing, sae_id, release
        ),
        "scr": lambda: run_scr(model, tok, sae, layer, scr_data(), plan.scr_tpp, sae_id, release),
        "tpp": lambda: run_tpp(model, tok, sae, layer, tpp_data(), plan.scr_tpp, sae_id, release),
        "absorption": lambda: run_absorption(model, tok, sae, layer, plan.absorption, sae_id, release),
        "autointerp": autointerp,
    }
    written: dict[str, Path | None] = {}
    for name in evals:
        seed_everything(seed)
        start = time.perf_counter()
        result = runners[name]()
        seconds = time.perf_counter() - start
        if result is None:
            written[name] = None
            continue
        path = out_dir / f"{name}.json"
        write_eval_output(path, result)
        written[name] = path
        print(f"{name}: {summary_line(name, result)}  ({seconds:.1f}s) -> {path}")
    return written


# --- summaries, comparison table, figure ----------------------------------------------------------

HEADLINE: dict[str, list[tuple[str, str, str]]] = {
    "core": [
        ("sparsity", "l0", "L0"),
        ("reconstruction_quality", "explained_variance", "explained variance"),
        ("reconstruction_quality", "cossim", "cosine sim"),
        ("model_performance_preservation", "ce_loss_score", "CE loss score"),
        ("model_performance_preservation", "ce_loss_with_sae", "CE with SAE"),
        ("model_performance_preservation", "ce_loss_without_sae", "CE clean"),
        ("model_behavior_preservation", "kl_div_score", "KL score"),
        ("misc_metrics", "frac_dead", "dead fraction"),
        ("misc_metrics", "frac_dense", "dense fraction"),
    ],
    "sparse_probing": [
        ("llm", "llm_test_accuracy", "LLM probe acc"),
        ("sae", "sae_top_1_test_accuracy", "SAE top-1 acc"),
        ("sae", "sae_top_2_test_accuracy", "SAE top-2 acc"),
        ("sae", "sae_top_5_test_accuracy", "SAE top-5 acc"),
        ("sae", "sae_test_accuracy", "SAE all-latents acc"),
    ],
    "scr": [
        ("scr_metrics", "scr_metric_threshold_2", "SCR top-2"),
        ("scr_metrics", "scr_metric_threshold_10", "SCR top-10"),
        ("scr_metrics", "scr_metric_threshold_20", "SCR top-20"),
    ],
    "tpp": [
        ("tpp_metrics", "tpp_threshold_2_total_metric", "TPP top-2"),
        ("tpp_metrics", "tpp_threshold_10_total_metric", "TPP top-10"),
        ("tpp_metrics", "tpp_threshold_20_total_metric", "TPP top-20"),
    ],
    "absorption": [
        ("mean", "mean_absorption_fraction_score", "absorption fraction"),
        ("mean", "mean_full_absorption_score", "full absorption"),
    ],
    "autointerp": [("autointerp", "autointerp_score", "autointerp score")],
}


def headline_values(eval_name: str, result: dict[str, Any]) -> list[tuple[str, float | None]]:
    metrics = result.get("eval_result_metrics", {})
    return [(label, metrics.get(cat, {}).get(key)) for cat, key, label in HEADLINE.get(eval_name, [])]


def summary_line(eval_name: str, result: dict[str, Any]) -> str:
    status = (
        (result.get("eval_result_unstructured") or {}).get("status") if eval_name == "absorption" else None
    )
    if status == "probe_too_weak":
        return "not scored — " + result["eval_result_unstructured"]["message"]
    parts = [
        f"{label} {value:.4g}"
        for label, value in headline_values(eval_name, result)
        if isinstance(value, (int, float))
    ]
    return ", ".join(parts) or "(no metrics)"


def load_results(
    model_name: str, output_dir: str | Path | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """{model_type: {eval: result}} for whatever results exist."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in MODEL_TYPES:
        folder = results_dir(model_name, kind, output_dir)
        for name in EVALS:
            path = folder / f"{name}.json"
            if path.exists():
                out.setdefault(kind, {})[name] = read_json(path)
    return out


def comparison_rows(results: dict[str, dict[str, dict[str, Any]]]) -> list[list[Any]]:
    rows = []
    for name in EVALS:
        per_kind = {kind: results.get(kind, {}).get(name) for kind in MODEL_TYPES}
        if not any(per_kind.values()):
            continue
        for cat, key, label in HEADLINE[name]:
            values = {
                kind: (r or {}).get("eval_result_metrics", {}).get(cat, {}).get(key) if r else None
                for kind, r in per_kind.items()
            }
            if all(v is None for v in values.values()):
                continue
            base, peft = values["base"], values["peft"]
            delta = peft - base if isinstance(base, (int, float)) and isinstance(peft, (int, float)) else None
            rows.append([name, label, base, peft, delta])
    return rows


def comparison_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = comparison_rows(results)
    if not rows:
        return "(no results yet)"
    notes = []
    for kind in MODEL_TYPES:
        absorption = results.get(kind, {}).get("absorption")
        if (
            absorption
            and (absorption.get("eval_result_unstructured") or {}).get("status") == "probe_too_weak"
        ):
            notes.append(f"absorption ({kind}): {absorption['eval_result_unstructured']['message']}")
    gap = gap_closed(results)
    if gap is not None:
        notes.insert(
            0,
            f"CE gap closed by the adapter: {100 * gap['fraction']:.1f}% "
            f"(L_base {gap['L_base']:.4f}, L_SAE {gap['L_SAE']:.4f}, L_LoRA {gap['L_LoRA']:.4f})",
        )
    table = tabulate(
        [[e, label, _fmt(b), _fmt(p), _fmt(d, signed=True)] for e, label, b, p, d in rows],
        headers=["eval", "metric", "base", "peft", "peft − base"],
        tablefmt="simple_outline",
        disable_numparse=True,
        colalign=("left", "left", "right", "right", "right"),
    )
    return table + ("\n" + "\n".join(notes) if notes else "")


def gap_closed(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, float] | None:
    """SPEC §3.3 from the two core results: L_base = the base model's CE, L_SAE = its CE with the SAE
    spliced, L_LoRA = the merged model's CE with the SAE; fraction = (L_SAE − L_LoRA) / (L_SAE − L_base)."""
    try:
        base = results["base"]["core"]["eval_result_metrics"]["model_performance_preservation"]
        peft = results["peft"]["core"]["eval_result_metrics"]["model_performance_preservation"]
        l_base, l_sae, l_lora = (
            base["ce_loss_without_sae"],
            base["ce_loss_with_sae"],
            peft["ce_loss_with_sae"],
        )
    except (KeyError, TypeError):
        return None
    if None in (l_base, l_sae, l_lora) or l_sae == l_base:
        return None
    return {
        "L_base": l_base,
        "L_SAE": l_sae,
        "L_LoRA": l_lora,
        "fraction": (l_sae - l_lora) / (l_sae - l_base),
    }


def _fmt(value: Any, signed: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def comparison_figure(results: dict[str, dict[str, dict[str, Any]]], out_stem: Path) -> list[Path]:
    """Bars of each headline metric, base vs peft; PNG and PDF written atomically."""
    from matplotlib.figure import Figure

    rows = [
        r
        for r in comparison_rows(results)
        if isinstance(r[2], (int, float)) and isinstance(r[3], (int, float))
    ]
    if not rows:
        return []
    ncols = 4
    nrows = -(-len(rows) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, label, base, peft, _) in zip(axes, rows):
        ax.bar([0, 1], [base, peft], color=["#7f7f7f", "#d62728"])
        ax.set_xticks([0, 1], ["base", "peft"])
        ax.set_title(f"{name}: {label}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(rows) :]:
        ax.set_axis_off()
    paths = []
    for fmt in ("png", "pdf"):
        path = out_stem.with_suffix(f".{fmt}")
        atomic_save_file(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150))
        paths.append(path)
    return paths


def world_seed(model_name: str) -> int:
    """The built-in world's seed (from the model folder's world.json; 0 when absent)."""
    from lorasae.models import resolve_model_name

    if model_name != "tiny" and not Path(model_name).exists():
        return 0
    info = Path(resolve_model_name(model_name)) / "world.json"
    return int(read_json(info).get("seed", 0)) if info.exists() else 0


def sae_identifier(source: str) -> tuple[str, str | None]:
    """(sae_lens_id, sae_lens_release_id): a sae-lens `release/sae_id` splits in two; a folder is its own id."""
    if Path(source).exists() or "/" not in source:
        return source, None
    release, sae_id = source.split("/", 1)
    return sae_id, release


def run(args: SaeBenchArgs) -> dict[str, Path | None]:
    """The whole `run_eval.py`."""
    setup_environment(wandb=args.wandb)
    seed_everything(args.seed)
    evals = selected_evals(args.evals)
    loaded = load_for_eval(args)
    device = next(loaded.model.parameters()).device
    plan = make_plan(args, loaded.model, device)
    print(
        f"SAE-Bench | {args.model_name} ({args.model_type}: {loaded.description}) | SAE {loaded.sae_source} "
        f"(layer {loaded.layer} of {num_layers(loaded.model)}, {int(loaded.sae.W_dec.shape[0])} latents) | "
        f"labelled data: {'built-in' if plan.builtin else 'hub'} | evals: {', '.join(evals)}"
    )
    out_dir = results_dir(args.model_name, args.model_type, args.output_dir)
    written = run_evals(loaded, plan, evals, out_dir, args.seed, world_seed(args.model_name))
    results = load_results(args.model_name, args.output_dir)
    print(f"\nSAE-Bench results for {args.model_name} (base vs LoRA-merged):")
    print(comparison_table(results))
    if args.plot and "base" in results and "peft" in results:
        paths = comparison_figure(results, plots_dir() / f"saebench_{sanitize(model_key(args.model_name))}")
        if paths:
            print(f"figure: {paths[0]}")
    return written
