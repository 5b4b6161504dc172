"""The plan of one run: which evals (`selected_evals`), at which sizes and on which data, as the evals'
configs (`EvalPlan`, `make_plan`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lorasae.model.load import max_positions
from lorasae.saebench.absorption import AbsorptionEvalConfig
from lorasae.saebench.args import EVALS, HUB_AUTOINTERP_DATASET, HUB_CORE_DATASET, SaeBenchArgs
from lorasae.saebench.autointerp import AutoInterpEvalConfig
from lorasae.saebench.core import CoreEvalConfig
from lorasae.saebench.hub_tasks import RAVEL_ENTITY_ATTRIBUTES
from lorasae.saebench.probing import SparseProbingEvalConfig
from lorasae.saebench.ravel import RAVELEvalConfig
from lorasae.saebench.scr_tpp import ScrAndTppEvalConfig
from lorasae.saebench.unlearning import UnlearningEvalConfig
from lorasae.world.sizes import is_builtin_size


def small_sizes(args: SaeBenchArgs, device: torch.device) -> bool:
    if args.size not in ("auto", "full", "small"):
        raise ValueError(f"--size must be auto, full or small, got {args.size!r}")
    if args.size == "auto":
        return is_builtin_size(args.model_name) or device.type == "cpu"
    return args.size == "small"


def use_builtin_labels(args: SaeBenchArgs) -> bool:
    if args.labelled_data not in ("auto", "hub", "builtin"):
        raise ValueError(f"--labelled_data must be auto, hub or builtin, got {args.labelled_data!r}")
    if args.labelled_data == "auto":
        return is_builtin_size(args.model_name) or args.dataset == "builtin"
    return args.labelled_data == "builtin"


def selected_evals(spec: str) -> list[str]:
    names = list(EVALS) if spec.strip() in ("", "all") else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in EVALS]
    if unknown:
        raise ValueError(f"unknown evals {unknown}; choose from {', '.join(EVALS)} or all")
    return names


def _context(model: nn.Module, wanted: int) -> int:
    limit = max_positions(model)
    return min(wanted, limit) if limit else wanted


@dataclass
class EvalPlan:
    """Configs and data sources of one run."""

    core: CoreEvalConfig
    probing: SparseProbingEvalConfig
    scr_tpp: ScrAndTppEvalConfig
    absorption: AbsorptionEvalConfig
    autointerp: AutoInterpEvalConfig
    ravel: RAVELEvalConfig
    unlearning: UnlearningEvalConfig
    builtin: bool
    core_dataset: str
    autointerp_dataset: str


def make_plan(args: SaeBenchArgs, model: nn.Module, device: torch.device) -> EvalPlan:
    small = small_sizes(args, device)
    builtin = use_builtin_labels(args)
    name = args.model_name
    bs = args.llm_batch_size or (16 if small else 32)
    ctx = _context(model, 128)
    default_text = "builtin" if is_builtin_size(name) else None
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
        ablation_pooling=args.scr_ablation_pooling,
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
    ravel = RAVELEvalConfig(
        **({} if builtin else {"entity_attribute_selection": dict(RAVEL_ENTITY_ATTRIBUTES)}),
        num_pairs_per_attribute=200 if small else 5000,
        model_name=name,
        llm_dtype=args.dtype,
        llm_batch_size=bs,
        random_seed=args.seed,
    )
    unlearning = UnlearningEvalConfig(
        random_seed=args.seed,
        dataset_size=64 if small else 1024,
        seq_len=ctx if small else min(1024, _context(model, 1024)),
        model_name=name,
        llm_batch_size=bs,
        llm_dtype=args.dtype,
        question_format="cloze" if builtin else "saebench",
    )
    return EvalPlan(
        core,
        probing,
        scr_tpp,
        absorption,
        autointerp,
        ravel,
        unlearning,
        builtin,
        core_dataset,
        autointerp_dataset,
    )
