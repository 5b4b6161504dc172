"""The LoRA-KL training loop (SPEC §3.2): frozen model + frozen SAEs spliced in, LoRA adapters trained so
that the spliced model's next-token distribution matches the original model's.

One model is in memory: the target distribution comes from the same PeftModel with its adapters disabled
and the SAEs off, under no_grad and in eval mode. Validation (mean next-token CE with the SAEs spliced)
runs before training and every `eval_every` sequences; the model is put back in training mode after each
(the original left dropout off after its first evaluation). Data-parallel under torchrun / accelerate
(`torch.distributed` initialised): the objective is wrapped in DDP, each rank takes its share of every
global batch and of the validation chunks.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lorasae.core.gap import GapClosed, gap_closed, paired_gap_se
from lorasae.kl import KL_IMPLS, LogitHead, chunked_kl, final_hidden, naive_kl, verify_head
from lorasae.lora.base_view import BaseView
from lorasae.model.ce import ce_per_chunk
from lorasae.model.forward_cache import ForwardCache, Lookup
from lorasae.model.hooks import SpliceFn, splice
from lorasae.train.distributed import DistInfo, all_reduce_sum, shard

SpliceFactory = Callable[[Tensor], Mapping[int, SpliceFn]]


@dataclass
class TrainSettings:
    """Optimisation and validation settings of one LoRA run (defaults: the paper's). `batch_size` counts
    sequences per step over all ranks; a run takes whole steps, so it ends at the first multiple of
    `batch_size` ≥ `num_train_examples`."""

    num_train_examples: int
    batch_size: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_every: int = 1000
    val_batch_size: int = 8
    kl_impl: str = "fused"
    kl_chunk_size: int = 0
    progress: bool = True
    desc: str = "LoRA"
    log_fn: Callable[[dict], None] | None = None


@dataclass
class LoraRunResult:
    """CE before and after adaptation and the validation curve of one run."""

    L_base: float  # noqa: N815 (the paper's names)
    L_SAE: float  # noqa: N815
    L_LoRA: float  # noqa: N815
    val_losses: list[float] = field(default_factory=list)
    minutes: list[float] = field(default_factory=list)
    examples: list[int] = field(default_factory=list)
    train_kl: list[float] = field(default_factory=list)
    kl_impl: str = "fused"
    gap_se: float = float("nan")
    """Standard error of L_SAE − L_base from the paired per-chunk CEs (`lorasae.core.gap.paired_gap_se`)."""

    @property
    def ce_gap(self) -> float:
        return self.L_SAE - self.L_base

    @property
    def ce_improvement(self) -> float:
        return self.L_SAE - self.L_LoRA

    @property
    def gap(self) -> GapClosed:
        """The fraction of the CE gap closed, or the `non_positive_gap` / `gap_within_noise` flag."""
        return gap_closed(self.L_base, self.L_SAE, self.L_LoRA, self.gap_se)

    @property
    def frac_gap_closed(self) -> float:
        """(L_SAE − L_LoRA) / (L_SAE − L_base); NaN when the gap is not positive (see `gap_flag`)."""
        fraction = self.gap.fraction
        return float("nan") if fraction is None else fraction

    @property
    def gap_flag(self) -> str | None:
        return self.gap.flag

    @property
    def total_minutes(self) -> float:
        return self.minutes[-1] if self.minutes else 0.0


def sae_splices(
    saes: Mapping[int, object], special_ids: Sequence[int], model: nn.Module | None = None
) -> SpliceFactory:
    """`input_ids -> {layer: fn}`: each SAE's reconstruction replaces the output of its layer (positions
    holding special tokens keep the original activation for SAEs with `skip_special_tokens`). A crosscoder
    (registered at each of its layers) needs `model`: its latents come from the batch's unspliced forward
    (`lorasae.sae.crosscoder_splice`), through the adapters, with gradients."""
    from lorasae.sae.crosscoder import Crosscoder
    from lorasae.sae.crosscoder_splice import crosscoder_splice_fns
    from lorasae.sae.splice import splice_fn

    coders = {id(s): s for s in saes.values() if isinstance(s, Crosscoder)}
    if coders and model is None:
        raise ValueError("sae_splices: splicing a crosscoder needs the model (its latents read every layer)")

    def build(input_ids: Tensor) -> dict[int, SpliceFn]:
        fns = {
            layer: splice_fn(sae, input_ids, special_ids)
            for layer, sae in saes.items()
            if not isinstance(sae, Crosscoder)
        }
        for coder in coders.values():
            mine = [layer for layer, sae in saes.items() if sae is coder]
            fns |= crosscoder_splice_fns(coder, model, input_ids, only=mine)  # type: ignore[arg-type]
        return fns

    return build


def dist_info() -> DistInfo:
    """Rank and world size of the initialised process group (one process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


class KLObjective(nn.Module):
    """KL(p_base ‖ p_LoRA+SAE) of a batch, summed over positions and divided by the batch size.
    A module so that DDP can wrap it; `model` must be a PeftModel (its adapters are switched off for
    the target)."""

    def __init__(self, model: nn.Module, splices: SpliceFactory, impl: str = "fused", chunk_size: int = 0):
        super().__init__()
        if impl not in KL_IMPLS:
            raise ValueError(f"kl_impl must be one of {KL_IMPLS}, got {impl!r}")
        self.model = model
        self.splices = splices
        self.impl = impl
        self.chunk_size = chunk_size or None
        self.head = LogitHead.from_model(model) if impl == "fused" else None
        self.base_view = BaseView(model)
        self.cached: Lookup | None = None
        """The process's store of targets for this model (`ForwardCache.for_model`), or None."""

    def check_fused(self, sample_ids: Tensor) -> None:
        """Fall back to `chunked` (with a warning) if the model's logits are not `head(final hidden)`."""
        if self.impl == "fused" and not verify_head(self.model, self.head, sample_ids):
            warnings.warn(
                f"{type(self.model.get_base_model()).__name__}: the LM head is not a plain linear layer over "
                "the final hidden states; computing the KL from full logits (--kl_impl chunked).",
                stacklevel=2,
            )
            self.impl, self.head = "chunked", None

    def _outputs(self, input_ids: Tensor) -> Tensor:
        if self.impl == "fused":
            return final_hidden(self.model, input_ids)
        return self.model(input_ids=input_ids, use_cache=False).logits

    def target(self, input_ids: Tensor) -> Tensor:
        """Final hidden states (fused) or logits of the original model: adapters and SAEs off (from the
        session's `ForwardCache` when one is attached)."""
        if self.cached is not None:
            return self.cached(f"kl-target:{self.impl}", input_ids, lambda: self._target(input_ids))
        return self._target(input_ids)

    def _target(self, input_ids: Tensor) -> Tensor:
        with torch.no_grad(), self.base_view.base():
            return self._outputs(input_ids)

    def forward(self, input_ids: Tensor) -> Tensor:
        base = self.target(input_ids)
        with splice(self.model, self.splices(input_ids)):
            student = self._outputs(input_ids)
        if self.impl == "naive":
            return naive_kl(student, base)
        return chunked_kl(student, base, head=self.head, chunk_size=self.chunk_size)


@dataclass(frozen=True)
class ChunkCE:
    """Summed CE and scored-token count of each validation chunk (all ranks gathered), [N] each."""

    sums: Tensor
    counts: Tensor

    @property
    def mean(self) -> float:
        return float(self.sums.sum() / self.counts.sum())


def validation_ce_chunks(
    model: nn.Module,
    val_chunks: Tensor,
    batch_size: int,
    splices: SpliceFactory | None = None,
    adapters: bool = True,
    info: DistInfo | None = None,
) -> ChunkCE:
    """Each validation chunk's CE (`lorasae.model.ce.ce_per_chunk`; each rank takes its share, gathered
    into every rank's copy), with the SAEs spliced when `splices` is given and the adapters off when
    `adapters` is False. The model's training mode is restored afterwards."""
    info = info or dist_info()
    n = len(val_chunks)
    mine = torch.arange(info.rank, n, info.world_size) if info.enabled else torch.arange(n)
    off = model.disable_adapter() if not adapters else contextlib.nullcontext()
    with off:
        sums, counts = (
            ce_per_chunk(model, val_chunks[mine], batch_size, splices) if len(mine) else (None, None)
        )
    both = torch.zeros(2, n, dtype=torch.float64, device=_device(model))
    if sums is not None:
        both[0, mine.to(both.device)] = sums.to(both.device)
        both[1, mine.to(both.device)] = counts.to(both.device, torch.float64)
    all_reduce_sum(both)
    return ChunkCE(both[0].cpu(), both[1].cpu())


def validation_ce(
    model: nn.Module,
    val_chunks: Tensor,
    batch_size: int,
    splices: SpliceFactory | None = None,
    adapters: bool = True,
    info: DistInfo | None = None,
) -> float:
    """Mean next-token CE on the validation chunks (`validation_ce_chunks`, token-weighted)."""
    return validation_ce_chunks(model, val_chunks, batch_size, splices, adapters, info).mean


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_lora(
    model: nn.Module,
    splices: SpliceFactory,
    train_batches: Iterator[Tensor],
    val_chunks: Tensor,
    settings: TrainSettings,
    base_ce: float | ChunkCE | None = None,
    info: DistInfo | None = None,
    targets: ForwardCache | None = None,
) -> LoraRunResult:
    """Train the adapters of PeftModel `model` on `train_batches` (global batches [B, T]) for
    `settings.num_train_examples` sequences; returns CEs and the validation curve (first point before
    training, cumulative training minutes with evaluation excluded). `targets`: a store of the original
    model's outputs shared by runs (`lorasae.model.forward_cache`; same results, a forward fewer a step)."""
    info = info or dist_info()
    device = _device(model)
    if settings.batch_size % info.world_size:
        raise ValueError(
            f"--batch_size {settings.batch_size} does not split over {info.world_size} ranks: use a multiple."
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters: attach LoRA adapters first.")
    objective = KLObjective(model, splices, settings.kl_impl, settings.kl_chunk_size)
    first = next(train_batches)
    objective.check_fused(first[:1, : min(16, first.shape[1])].to(device))
    objective.cached = targets.for_model(model) if targets is not None else None
    step_module: nn.Module = objective
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        step_module = DistributedDataParallel(objective, device_ids=ids)

    def evaluate() -> float:
        value = validation_ce(model, val_chunks, settings.val_batch_size, splices, info=info)
        model.train()  # dropout back on for training
        return value

    if base_ce is None:
        base_ce = validation_ce_chunks(model, val_chunks, settings.val_batch_size, None, False, info)
    spliced = validation_ce_chunks(model, val_chunks, settings.val_batch_size, splices, info=info)
    model.train()
    initial = spliced.mean
    result = LoraRunResult(_mean(base_ce), initial, initial, [initial], [0.0], [0], [], objective.impl)
    if isinstance(base_ce, ChunkCE):  # the gap's noise: paired per-chunk differences (`lorasae.core.gap`)
        result.gap_se = paired_gap_se(base_ce.sums, base_ce.counts, spliced.sums, spliced.counts)
    log = settings.log_fn or (lambda _: None)
    log({"examples": 0, "val_loss": initial, "base_loss": result.L_base, "minutes": 0.0})

    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    model.train()
    total = settings.num_train_examples
    bar = None
    if settings.progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=settings.desc, unit="seq", dynamic_ncols=True, leave=False)
    seen = since_eval = 0
    train_seconds = 0.0
    kl_sum = torch.zeros((), dtype=torch.float64, device=device)
    kl_steps = 0
    batches = _prepend(first, train_batches)
    try:
        while seen < total:
            start = time.perf_counter()
            batch = shard(next(batches), info).to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = step_module(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            optimizer.step()
            kl_sum += loss.detach().double()
            kl_steps += 1
            step_size = settings.batch_size
            seen += step_size
            since_eval += step_size
            if bar is not None:
                bar.update(step_size)
                if kl_steps % 10 == 1:
                    bar.set_postfix(kl=f"{loss.item():.4f}", val=f"{result.val_losses[-1]:.4f}")
            if since_eval >= settings.eval_every or seen >= total:
                _sync(device)
                train_seconds += time.perf_counter() - start
                mean_kl = float(all_reduce_sum(kl_sum.clone()) / (kl_steps * info.world_size))
                val = evaluate()
                result.val_losses.append(val)
                result.minutes.append(train_seconds / 60)
                result.examples.append(seen)
                result.train_kl.append(mean_kl)
                log({"examples": seen, "val_loss": val, "train_kl": mean_kl, "minutes": train_seconds / 60})
                kl_sum.zero_()
                kl_steps = since_eval = 0
                if bar is not None:
                    bar.set_postfix(kl=f"{mean_kl:.4f}", val=f"{val:.4f}")
            else:
                train_seconds += time.perf_counter() - start
    finally:
        if bar is not None:
            bar.close()
    result.L_LoRA = result.val_losses[-1]
    if math.isnan(result.L_LoRA):
        raise FloatingPointError("Validation CE became NaN: lower --lr.")
    return result


def _mean(ce: float | ChunkCE) -> float:
    return ce.mean if isinstance(ce, ChunkCE) else float(ce)


def _prepend(first: Tensor, rest: Iterator[Tensor]) -> Iterator[Tensor]:
    yield first
    yield from rest
