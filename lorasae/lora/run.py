"""`train_lora.py`'s pipeline: plan the runs (`lorasae.lora.plan`: `plan_runs`, `PlannedRun`, used from
here too), load the model and the data once (a `LoraSession`), and for each run attach fresh adapters,
train, write the outputs (run records last) and print a summary. `main_many` runs several invocations (a sweep) on one session per model."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lorasae.core.atomic import read_csv_rows
from lorasae.core.paths import results_csv
from lorasae.core.paths import root as output_root
from lorasae.core.preflight import check_writable
from lorasae.core.runtime import parse_device, seed_everything, setup_environment
from lorasae.lora.adapters import attach_lora, format_layers
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.outputs import (
    RunId,
    append_result,
    replaced_fingerprint,
    results_row,
    save_adapter,
    write_curves,
    write_run_records,
)
from lorasae.lora.plan import PlannedRun, make_run_id, plan_runs
from lorasae.lora.trainer import (
    ChunkCE,
    LoraRunResult,
    TrainSettings,
    sae_splices,
    train_lora,
    validation_ce_chunks,
)
from lorasae.model.data import TokenSplit, load_token_split
from lorasae.model.forward_cache import ForwardCache, shared_forward_cache
from lorasae.model.load import ModelShape, d_model, load_model, special_token_ids
from lorasae.sae.capabilities import TRAIN_LORA, sae_input_at
from lorasae.sae.crosscoder import Crosscoder
from lorasae.sae.crosscoder_splice import coder_layers, source_activations
from lorasae.store import SaeRun, load_saes
from lorasae.store.lora_identity import (
    sae_parents,
)
from lorasae.train import distributed


@dataclass
class RunSummary:
    run: RunId
    result: LoraRunResult
    sae_layers: list[int]
    checkpoint_pct: int | None
    paths: dict[str, str]
    skipped: bool = False

    def line(self) -> str:
        r = self.result
        pct = f" ({self.checkpoint_pct}%)" if self.checkpoint_pct is not None else ""
        return (
            f"[{self.run.model} {self.run.sae_tag}{pct}] SAE@{format_layers(self.sae_layers)} "
            f"LoRA {format_layers(self.run.lora_layers)} r{self.run.rank}, {self.run.num_examples} seq: "
            f"L_base {r.L_base:.4f}  L_SAE {r.L_SAE:.4f} → L_LoRA {r.L_LoRA:.4f}  "
            f"gap closed {r.gap.percent_text}  ({r.total_minutes:.2f} train min)"
        )


@torch.no_grad()
def sae_l0(sae: object, model: nn.Module, layer: int, chunks: torch.Tensor) -> float:
    """The SAE's L0: its `fixed_l0` where its inference encoding fixes one (a TopK SAE, transcoder or
    crosscoder: k), else the mean number of active latents per token on `chunks`, measured in eval mode
    (BatchTopK / Matryoshka: above their inference threshold; JumpReLU, ReLU)."""
    fixed = getattr(sae, "fixed_l0", None)
    if fixed:
        return float(fixed)
    assert isinstance(sae, nn.Module)
    device, training = next(model.parameters()).device, sae.training
    sae.eval()  # BatchTopK's training mode would keep k per token on average
    try:
        if isinstance(sae, Crosscoder):  # latents from every source layer
            xs = source_activations(model, chunks.to(device), coder_layers(sae))
            z = sae.encode([x.reshape(-1, x.shape[-1]) for x in xs])
        else:
            z = sae.encode(sae_input_at(sae, model, chunks.to(device), layer))  # a transcoder's: MLP input
    finally:
        sae.train(training)
    return float((z != 0).sum(-1).double().mean())


def output_folders(cfg: TrainLoraConfig) -> list[Path]:
    """Where a run of `cfg` writes: the results and curves, and the adapters with --save_model."""
    folders = [results_csv().parent]
    if cfg.save_model:
        folders.append(output_root() / "saved_models")
    return folders


def _wandb_logger(cfg: TrainLoraConfig, run_name: str):
    if not cfg.wandb:
        return None, None
    import wandb

    handle = wandb.init(project="lorasae-lora", name=run_name, config=vars(cfg), reinit=True)
    return handle, lambda record: wandb.log(record)


def main(cfg: TrainLoraConfig) -> list[RunSummary]:
    """Run every LoRA run `cfg` asks for; returns their summaries (rank 0 writes the outputs)."""
    return main_many([cfg])


def main_many(cfgs: Sequence[TrainLoraConfig]) -> list[RunSummary]:
    """Every run of several invocations (a sweep), loading the model and the data once for consecutive
    invocations that share them (same model, data, dtype, context, validation set and seed). Runs are
    planned first: with `skip_existing`, a run whose outputs exist is skipped before anything loads."""
    if not cfgs:
        return []
    setup_environment(wandb=any(cfg.wandb for cfg in cfgs))
    info, device = distributed.setup(parse_device(cfgs[0].device))
    started = time.perf_counter()
    summaries: list[RunSummary] = []
    session: LoraSession | None = None
    try:
        for i, cfg in enumerate(cfgs, 1):
            planned = plan_runs(cfg)
            todo = [p for p in planned if p.to_train(info.is_main)]
            if todo:
                check_writable(output_folders(cfg), "LoRA outputs")
                read_csv_rows(results_csv())  # a damaged table: said now, not after training
            if not todo:
                continue
            if session is None or not session.serves(cfg):
                session = None
                gc.collect()
                session = open_session(cfg, info, device)
            if len(cfgs) > 1 and info.is_main:
                print(f"[{i}/{len(cfgs)}] {', '.join(cfg.sae) or cfg.model_key} rank {cfg.rank}", flush=True)
            summaries += run_all(session, todo)
    finally:
        distributed.teardown()
    if info.is_main and summaries:
        print_table(summaries, time.perf_counter() - started)
    return summaries


# what a session is loaded for: runs whose resolved configs agree on these share the model and the data
SESSION_FIELDS = (
    "model_name",
    "dataset",
    "dtype",
    "ctx_len",
    "num_val_tokens",
    "val_batch_size",
    "text_field",
)


@dataclass
class LoraSession:
    """What every run on one model shares: the frozen model (adapters are attached per run), the data
    split and the original model's validation CE."""

    cfg: TrainLoraConfig
    """The resolved config the session was opened with."""
    model: nn.Module
    split: TokenSplit
    special_ids: list[int]
    base_ce: float | ChunkCE
    """The original model's validation CE, per chunk (the gap's noise is measured from it)."""
    info: distributed.DistInfo
    device: torch.device
    targets: ForwardCache = field(default_factory=shared_forward_cache)
    """The original model's outputs on the training batches, shared by the process's runs."""

    @property
    def n_layers(self) -> int:
        return ModelShape.of(self.model).n_layers

    def resolve(self, cfg: TrainLoraConfig) -> TrainLoraConfig:
        shape = ModelShape.of(self.model)
        return cfg.resolved(shape.d_model, shape.n_layers, shape.max_positions)

    def serves(self, cfg: TrainLoraConfig) -> bool:
        if cfg.model_name != self.cfg.model_name or cfg.seed != self.cfg.seed:
            return False
        resolved = self.resolve(cfg)
        return all(getattr(resolved, f) == getattr(self.cfg, f) for f in SESSION_FIELDS)


def open_session(cfg: TrainLoraConfig, info: distributed.DistInfo, device: torch.device) -> LoraSession:
    """Load the model and the data split, and measure the original model's validation CE."""
    seed_everything(cfg.seed)
    model, tokenizer = load_model(cfg.model_name, device, cfg.dtype)
    model.requires_grad_(False)
    shape = ModelShape.of(model)
    cfg = cfg.resolved(shape.d_model, shape.n_layers, shape.max_positions)
    split = load_token_split(
        cfg.dataset, tokenizer, cfg.ctx_len, cfg.num_val_tokens, cfg.seed, text_field=cfg.text_field
    )
    base_ce = validation_ce_chunks(model, split.val, cfg.val_batch_size, None, info=info)
    return LoraSession(cfg, model, split, special_token_ids(tokenizer), base_ce, info, device)


def run_all(session: LoraSession, planned: Sequence[PlannedRun]) -> list[RunSummary]:
    """The planned runs of one invocation (one per SAE checkpoint, or one over the `--sae` sources)."""
    if not planned:
        return []
    cfg = session.resolve(planned[0].cfg)
    if session.info.is_main:
        print(
            f"{cfg.model_key}: {session.n_layers} layers, d_model {d_model(session.model)}; {len(planned)} "
            f"run(s); {len(session.split.val)} validation chunks of {cfg.ctx_len} tokens; lr {cfg.lr:g}, "
            f"{cfg.num_train_examples} sequences, validation every {cfg.eval_every}."
        )
    summaries = []
    for p in planned:
        summary = train_run(session, cfg, p.run, p.run_id is not None)
        if summary is not None:
            summaries.append(summary)
    return summaries


def train_run(
    session: LoraSession, cfg: TrainLoraConfig, run: SaeRun, decided: bool = False
) -> RunSummary | None:
    """Attach fresh adapters, train them with the run's SAEs spliced, write the outputs and, last, the run
    record; None when the run is done and not to be redone (`PlannedRun.to_train`, unless `decided` when
    it was planned)."""
    info, split = session.info, session.split
    model = session.model
    saes = load_saes(run, model, session.device, next(model.parameters()).dtype, suite=TRAIN_LORA)
    sae_layers = sorted(saes)
    run_id = make_run_id(cfg, run, sae_layers, ModelShape.of(model))
    # the SAEs' width and L0 (measured on the original model for non-TopK SAEs), for results.csv
    widths = [float(s.cfg.d_sae) for s in saes.values()]
    l0s = [sae_l0(s, model, layer, split.val[:4]) for layer, s in saes.items()] if info.is_main else [0.0]
    lora_layers = list(run_id.lora_layers)
    planned = PlannedRun(cfg, run, run_id, sae_layers)
    if not decided and not planned.to_train(info.is_main):
        return None
    identity = planned.identity()
    replaced = replaced_fingerprint(run_id)  # a run whose outputs this one replaces (--overwrite)
    fingerprint = planned.fingerprint
    parents = sae_parents(run.sources)
    seed_everything(cfg.seed)  # same adapter init and data order for every checkpoint
    peft_model = attach_lora(model, lora_layers, cfg.rank, cfg.lora_alpha, cfg.lora_dropout)
    wandb_run, log_fn = _wandb_logger(cfg, f"{run_id.sae_tag}_r{cfg.rank}") if info.is_main else (None, None)
    settings = TrainSettings(
        num_train_examples=cfg.num_train_examples,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        eval_every=cfg.eval_every,
        val_batch_size=cfg.val_batch_size,
        kl_impl=cfg.kl_impl,
        kl_chunk_size=cfg.kl_chunk_size,
        progress=cfg.progress,
        desc=f"LoRA {run_id.sae_tag}",
        log_fn=log_fn,
    )
    try:
        result = train_lora(
            peft_model,
            sae_splices(saes, session.special_ids, peft_model),
            split.train_batches(cfg.batch_size),
            split.val,
            settings,
            base_ce=session.base_ce,
            info=info,
            targets=session.targets,
        )
        paths: dict[str, str] = {}
        if info.is_main:
            paths = {k: str(v) for k, v in write_curves(run_id, result).items()}
            row = results_row(
                run_id,
                result,
                run.sources,
                sae_layers,
                sum(widths) / len(widths),
                sum(l0s) / len(l0s),
                run.checkpoint_pct,
                fingerprint,
            )
            paths["results"] = str(append_result(row, replaces=replaced))
            if cfg.save_model:
                paths["adapter"] = str(save_adapter(peft_model, run_id.adapter_path(), identity, parents))
            paths["record"] = str(write_run_records(run_id, identity, parents, dict(paths)))
        distributed.barrier()
    finally:
        if wandb_run is not None:
            wandb_run.finish()
        session.model = peft_model.unload()  # the plain model back, for the next run
        del saes
        gc.collect()
    summary = RunSummary(run_id, result, sae_layers, run.checkpoint_pct, paths)
    if info.is_main:
        print(summary.line())
        for name, path in paths.items():
            print(f"  {name}: {path}")
    return summary


def print_table(summaries: Sequence[RunSummary], seconds: float) -> None:
    from tabulate import tabulate

    rows = [
        [
            s.run.sae_tag,
            format_layers(s.sae_layers),
            format_layers(s.run.lora_layers),
            s.run.rank,
            f"{s.result.L_base:.4f}",
            f"{s.result.L_SAE:.4f}",
            f"{s.result.L_LoRA:.4f}",
            s.result.gap.text,
            f"{s.result.total_minutes:.2f}",
        ]
        for s in summaries
    ]
    headers = ["SAE", "SAE layers", "LoRA layers", "rank", "L_base", "L_SAE", "L_LoRA", "gap closed %", "min"]
    print(tabulate(rows, headers=headers))
    print(f"{len(summaries)} run(s) in {seconds / 60:.1f} min wall time.")
