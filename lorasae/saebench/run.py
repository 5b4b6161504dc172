"""`eval/SAE-Bench/run_eval.py` end to end: load the base or LoRA-merged model and the SAE, run the
selected SAEBench-style evals, write one SAEBench JSON per eval under
`eval/SAE-Bench/results/<model>_<base|peft>/<eval>.json`, and print (and plot) base vs peft.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lorasae.core.fingerprint import fingerprint, weights_digest
from lorasae.core.paths import plots_dir, sanitize, with_variant
from lorasae.core.preflight import check_writable
from lorasae.core.runtime import seed_everything, setup_environment
from lorasae.evals.capabilities import check_suite
from lorasae.evals.identity import done_already, eval_identity, result_slot, write_eval_record
from lorasae.model.load import model_key, num_layers
from lorasae.saebench import builtin_datasets, hub_datasets, hub_tasks, world_tasks
from lorasae.saebench import datasets as data
from lorasae.saebench.absorption import run_absorption
from lorasae.saebench.args import SaeBenchArgs, ravel_cache_dir, result_variant, results_dir
from lorasae.saebench.autointerp import run_autointerp
from lorasae.saebench.comparison import (
    SAE_FINGERPRINT,
    comparison_figure,
    comparison_table,
    load_results,
    pair_results,
    result_folders,
    summary_line,
)
from lorasae.saebench.core import run_core
from lorasae.saebench.load import Loaded, load_for_eval, sae_identifier
from lorasae.saebench.peft_dict import merge_variant
from lorasae.saebench.plan import EvalPlan, make_plan, selected_evals
from lorasae.saebench.probing import run_sparse_probing
from lorasae.saebench.ravel import run_ravel
from lorasae.saebench.schema import write_eval_output
from lorasae.saebench.scr_tpp import run_scr, run_tpp
from lorasae.saebench.unlearning import run_unlearning
from lorasae.saebench.world_tasks import model_world_docs
from lorasae.world import world_seed


def run_evals(
    loaded: Loaded,
    plan: EvalPlan,
    evals: Sequence[str],
    out_dir: Path,
    seed: int = 42,
    world_seed: int = 0,
    documents: Any = None,
    forget_corpus: str | None = None,
    world_docs: int | None = None,
) -> dict[str, Path | None]:
    """Run `evals` and write each result; returns {eval: path written (None when skipped)}.
    `documents` replaces the built-in corpus (tests); `world_docs` is the size of the corpus the built-in
    model learned (its facts are what RAVEL and unlearning ask about)."""
    model, tok, sae, layer = loaded.model, loaded.tokenizer, loaded.sae, loaded.layer
    sae_id, release = sae_identifier(loaded.sae_source)

    def probing_data() -> dict[str, data.TrainTest]:
        cfg = plan.probing
        if plan.builtin:
            return builtin_datasets.builtin_probing_datasets(
                cfg.probe_train_set_size, cfg.probe_test_set_size, seed, world_seed, documents
            )
        return {
            n: hub_datasets.hub_probing_dataset(n, cfg.probe_train_set_size, cfg.probe_test_set_size, seed)
            for n in data.HUB_SPARSE_PROBING_DATASETS
        }

    def scr_data() -> dict[str, data.TrainTest]:
        cfg = plan.scr_tpp
        if plan.builtin:
            return builtin_datasets.builtin_scr_runs(
                cfg.train_set_size, cfg.test_set_size, seed, world_seed, documents
            )
        runs: dict[str, data.TrainTest] = {}
        for name in data.SCR_COLUMN1_VALS:
            runs |= hub_datasets.hub_scr_runs(name, cfg.train_set_size, cfg.test_set_size, seed)
        return runs

    def tpp_data() -> dict[str, data.TrainTest]:
        cfg = plan.scr_tpp
        if plan.builtin:
            return builtin_datasets.builtin_tpp_datasets(
                cfg.train_set_size, cfg.test_set_size, seed, world_seed, documents
            )
        return {
            n: hub_datasets.hub_probing_dataset(n, cfg.train_set_size, cfg.test_set_size, seed)
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

    def ravel() -> dict[str, Any] | None:
        cfg = plan.ravel
        if plan.builtin:
            attributes = [a for attrs in cfg.entity_attribute_selection.values() for a in attrs]
            prompts = {
                world_tasks.RAVEL_ENTITY_CLASS: world_tasks.builtin_ravel_prompts(tok, world_seed, attributes)
            }
        else:
            prompts = hub_tasks.hub_ravel_prompts(tok, cfg.entity_attribute_selection, ravel_cache_dir())
        return run_ravel(model, tok, sae, layer, prompts, cfg, sae_id, release)

    def unlearning() -> dict[str, Any] | None:
        cfg = plan.unlearning
        if plan.builtin:
            questions = world_tasks.builtin_unlearning_questions(world_seed, world_docs)
            forget, retain = world_tasks.builtin_unlearning_corpora(cfg.dataset_size, world_seed)
            forget_subject = world_tasks.FORGET_SUBJECT
        elif forget_corpus is None:
            print("unlearning: skipped — hub unlearning needs --forget_corpus (WMDP's bio forget corpus)")
            return None
        else:
            questions = hub_tasks.hub_unlearning_questions()
            forget, retain = hub_tasks.hub_unlearning_corpora(forget_corpus, cfg.dataset_size, seed)
            forget_subject = hub_tasks.WMDP_BIO
        return run_unlearning(
            model, tok, sae, layer, questions, forget, retain, cfg, sae_id, release, forget_subject
        )

    runners: dict[str, Callable[[], dict[str, Any] | None]] = {
        "core": core,
        "sparse_probing": lambda: run_sparse_probing(
            model, tok, sae, layer, probing_data(), plan.probing, sae_id, release
        ),
        "scr": lambda: run_scr(model, tok, sae, layer, scr_data(), plan.scr_tpp, sae_id, release),
        "tpp": lambda: run_tpp(model, tok, sae, layer, tpp_data(), plan.scr_tpp, sae_id, release),
        "absorption": lambda: run_absorption(model, tok, sae, layer, plan.absorption, sae_id, release),
        "autointerp": autointerp,
        "ravel": ravel,
        "unlearning": unlearning,
    }
    # which SAE the results are for: base and peft results are compared only when these match
    sae_print = fingerprint(
        "", None, {"sae_source": loaded.sae_source, "layer": layer}, [weights_digest(loaded.sae_source)]
    )
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
        write_eval_output(path, {**result, SAE_FINGERPRINT: sae_print})
        written[name] = path
        print(f"{name}: {summary_line(name, result)}  ({seconds:.1f}s) -> {path}")
    return written


def run(args: SaeBenchArgs) -> dict[str, Path | None]:
    """The whole `run_eval.py`; returns {eval: its result file (None: not computed)}. An eval whose result
    exists with a run record of the same run is skipped, saying so, unless `--overwrite`."""
    setup_environment(wandb=args.wandb)
    seed_everything(args.seed)
    evals = selected_evals(args.evals)
    # before the model loads: an unwritable results folder would lose every eval's work
    check_writable(
        [results_dir(args.model_name, args.model_variant, args.output_dir), plots_dir()], "SAE-Bench results"
    )
    loaded = load_for_eval(args)
    for name in evals:  # a one-line refusal for an architecture an eval cannot take
        check_suite(name, loaded.sae, loaded.sae_source)
    variant = result_variant(args)
    # the merge dtype goes with the adapter (the base result of the same settings still pairs with it)
    merge = merge_variant(loaded.merge_dtype)
    slot = with_variant(with_variant(result_slot(loaded.sae_tag, loaded.adapter), merge), variant)
    device = next(loaded.model.parameters()).device
    plan = make_plan(args, loaded.model, device)
    print(
        f"SAE-Bench | {args.model_name} ({args.model_variant}: {loaded.description}) | SAE {loaded.sae_source} "
        f"(layer {loaded.layer} of {num_layers(loaded.model)}, {int(loaded.sae.W_dec.shape[0])} latents) | "
        f"labelled data: {'built-in' if plan.builtin else 'hub'} | evals: {', '.join(evals)}"
    )
    out_dir = results_dir(args.model_name, args.model_variant, args.output_dir, slot)
    # what was run, not how it was asked for: the layer the SAE reads (--layer or, by default, the SAE's
    # own), so `make demo` (which passes --layer) and README's command (which does not) are one run
    settings = {k: v for k, v in vars(args).items() if k not in ("evals", "sae", "adapter", "model")}
    settings["layer"] = loaded.layer
    # the dtype the adapter was merged in (the merged file used, if any, is a parent in the record)
    if loaded.merge_dtype is not None:
        settings["merge_dtype"] = loaded.merge_dtype
    identities = {
        name: eval_identity(
            args.model_name,
            [loaded.sae_source],
            loaded.adapter,
            {**settings, "eval": name, "sae_tag": loaded.sae_tag},
            variant,
        )  # fmt: skip
        for name in evals
    }
    todo = [
        name
        for name in evals
        if not done_already(name, out_dir / f"{name}.json", identities[name], args.overwrite)
    ]
    written = run_evals(
        loaded, plan, todo, out_dir, args.seed, world_seed(args.model_name),
        forget_corpus=args.forget_corpus, world_docs=model_world_docs(args.model_name),
    )  # fmt: skip
    inputs = [loaded.peft_dict] if loaded.peft_dict is not None else []  # the merged file used: a parent
    for name, path in written.items():
        if path is not None:
            write_eval_record(path, "saebench_result", identities[name], inputs)
    written = {name: written.get(name, out_dir / f"{name}.json") for name in evals}  # skipped: kept
    found = load_results(args.model_name, args.output_dir, sae_tag=loaded.sae_tag, variant=variant)
    results = pair_results(found)[0]
    print(f"\nSAE-Bench results for {args.model_name} (base vs LoRA-merged):")
    print(comparison_table(results))
    if args.plot:
        paths = draw_comparison(args.model_name, args.output_dir, loaded.sae_tag, variant)
        if paths:
            print(f"figure: {paths[0]}")
    return written


def draw_comparison(
    model_name: str, output_dir: str | Path | None, sae_tag: str, variant: str, stem: str | None = None
) -> list[Path]:
    """The base-vs-LoRA-merged figure of one SAE's results of the settings `variant`, once both exist:
    `plots/saebench_<model>__<peft slot>` — named after the results it draws (SAE, adapter, settings), so
    another adapter's results never redraw it — or `plots/<stem>` (`make demo`'s plain `saebench_<model>`)."""
    results = pair_results(load_results(model_name, output_dir, sae_tag=sae_tag, variant=variant))[0]
    if "base" not in results or "peft" not in results:
        return []
    folders = result_folders(model_name, output_dir, sae_tag, variant)
    stem = stem or f"saebench_{sanitize(model_key(model_name))}__{folders['peft'].name}"
    inputs = [folders[kind] / f"{name}.json" for kind in results for name in results[kind]]
    return comparison_figure(results, plots_dir() / stem, inputs)
