"""`train_lora.py`'s pipeline: load the model and the data once (a `LoraSession`), resolve the SAEs (our
checkpoints — one run each — or `--sae` sources), and for each run attach fresh adapters, train, write the
outputs and print a summary. `main_many` runs several invocations (a sweep) on one session per model."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lorasae.data import TokenSplit, load_token_split
from lorasae.errors import OutputExistsError
from lorasae.hooks import residual_at
from lorasae.lora.adapters import attach_lora, format_layers, lora_layer_list, parse_layer_spec
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.identity import (
    RunState,
    identity_digest,
    name_settings,
    run_identity,
    run_state,
    sae_parents,
)
from lorasae.lora.outputs import (
    RunId,
    append_result,
    results_row,
    save_adapter,
    write_curves,
    write_run_records,
)
from lorasae.lora.trainer import LoraRunResult, TrainSettings, sae_splices, train_lora, validation_ce
from lorasae.model_defaults import default_sae_layer
from lorasae.models import ModelShape, check_layer, d_model, load_model, model_shape, special_token_ids
from lorasae.paths import results_csv
from lorasae.paths import root as output_root
from lorasae.preflight import check_writable
from lorasae.runtime import parse_device, seed_everything, setup_environment
from lorasae.sae.crosscoder import Crosscoder
from lorasae.sae.crosscoder_splice import coder_layers, source_activations
from lorasae.store import SaeRun, check_run_layers, external_run, load_saes, our_sae_runs, preflight_saes
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
    """The SAE's L0: `k` for TopK SAEs, else the mean number of active latents per token on `chunks`."""
    k = getattr(sae.cfg, "k", None)
    if k:
        return float(k)
    device = next(model.parameters()).device
    if isinstance(sae, Crosscoder):  # latents from every source layer
        xs = source_activations(model, chunks.to(device), coder_layers(sae))
        z = sae.encode([x.reshape(-1, x.shape[-1]) for x in xs])
        return float((z != 0).sum(-1).float().mean())
    x = residual_at(model, chunks.to(device), layer)
    return float((sae.encode(x) != 0).sum(-1).float().mean())


def resolve_runs(cfg: TrainLoraConfig) -> list[SaeRun]:
    """The runs of a resolved config: one over the `--sae` sources, or one per checkpoint of our SAE."""
    layers = parse_layer_spec(cfg.sae_layer) if cfg.sae_layer is not None else None
    if cfg.sae:
        return [external_run(cfg.sae, layers)]
    return our_sae_runs(
        cfg.model_name, layers, cfg.sae_kind, cfg.expansion_factor, cfg.k, cfg.checkpoint_percent
    )


@dataclass
class PlannedRun:
    """One LoRA run, settled before any weights load: its resolved config, its SAEs and, when their layers
    are known from the sources (ours always are), its output names."""

    cfg: TrainLoraConfig
    run: SaeRun
    run_id: RunId | None
    sae_layers: list[int] | None = None

    def identity(self) -> dict:
        """Everything that decides this run's numbers (its run record's identity)."""
        assert self.run_id is not None and self.sae_layers is not None
        return run_identity(
            self.cfg, self.run.sources, self.sae_layers, self.run_id.lora_layers, self.run_id.sae_tag
        )

    @property
    def fingerprint(self) -> str:
        """The identity's digest (results.csv's `fingerprint`)."""
        return identity_digest(self.identity())

    def state(self) -> RunState:
        """`lorasae.lora.identity.run_state`: the one "done" rule (train_lora.py, sweep.py, the demo)."""
        if self.run_id is None:
            return RunState("new")
        adapter = self.run_id.adapter_path() if self.cfg.save_model else None
        label = f"{self.run_id.sae_tag} rank {self.run_id.rank}"
        return run_state(self.run_id.json_path("CE_increase"), adapter, self.identity, label)

    def status(self) -> str:
        """`done`, `new`, `incomplete`, `damaged` or `different` (`RunState.state`)."""
        return self.state().state

    def done(self) -> bool:
        return self.state().done

    def note(self) -> str:
        """What a rerun of this run says before it starts (empty for a new run)."""
        return self.state().note

    def to_train(self, is_main: bool) -> bool:
        """Whether to train it: a done run is skipped saying so, unless `--overwrite` (or
        `--skip_existing false`); a run under another's name is refused unless `--overwrite`;
        incomplete or damaged runs are redone saying so."""
        state = self.state()
        redo = self.cfg.overwrite or not self.cfg.skip_existing
        if state.state == "different" and not self.cfg.overwrite:
            raise OutputExistsError(state.note)
        if state.done and not redo:
            if is_main:
                print(state.note)
            return False
        if is_main and state.state != "new":
            note = state.note if state.state in ("incomplete", "damaged") else ""
            print(note or f"Redoing {self.run_id.sae_tag} rank {self.run_id.rank} (--overwrite).")
        return True


def make_run_id(cfg: TrainLoraConfig, run: SaeRun, sae_layers: list[int], shape: ModelShape) -> RunId:
    """The names of a run's outputs (`cfg` resolved for `shape`)."""
    lora_layers = lora_layer_list(cfg.LoRA_layers, sae_layers, shape.n_layers)
    tag = run.tag(sae_layers, default_sae_layer(shape.n_layers))
    default = TrainLoraConfig(
        model_type=cfg.model_type, model=cfg.model, num_train_examples=cfg.num_train_examples
    ).resolved(shape.d_model, shape.n_layers, shape.max_positions)
    settings = tuple(sorted(name_settings(cfg, default).items()))
    return RunId(cfg.model_key, tag, tuple(lora_layers), cfg.rank, cfg.num_train_examples, settings)


def plan_runs(
    cfg: TrainLoraConfig, shape: ModelShape | None = None, preflight: bool = True
) -> list[PlannedRun]:
    """Resolve `cfg` against the model's shape (its config only), find its SAEs and name every run's
    outputs, so that bad layers fail and finished runs are skipped before the model loads (`preflight`:
    also check the SAEs' weights)."""
    shape = shape or model_shape(cfg.model_name)
    cfg = cfg.resolved(shape.d_model, shape.n_layers, shape.max_positions)
    for layer in parse_layer_spec(cfg.sae_layer) if cfg.sae_layer is not None else []:
        check_layer(shape, layer)
    planned = []
    for run in resolve_runs(cfg):
        check_run_layers(run, shape)
        layers = run.layers
        run_id = make_run_id(cfg, run, layers, shape) if layers is not None else None
        if preflight:
            preflight_saes(run.sources, shape.d_model)  # NaN weights, wrong width: before anything loads
        planned.append(PlannedRun(cfg, run, run_id, list(layers) if layers is not None else None))
    return planned


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
    base_ce: float
    info: distributed.DistInfo
    device: torch.device

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
    base_ce = validation_ce(model, split.val, cfg.val_batch_size, None, info=info)
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
    saes = load_saes(run, model, session.device, next(model.parameters()).dtype)
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
            paths["results"] = str(append_result(row))
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
