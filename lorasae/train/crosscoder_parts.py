"""`train_sae.py --architecture crosscoder --layers a b ...`: one dictionary over the residual streams after
several decoder layers of one model (`lorasae.sae.crosscoder.Crosscoder`, the grokking study's class), or
with `--models A B` over the output of `--layer` of several models fed the same tokens (the seed's
cross-model crosscoder: pre- and post-generalization checkpoints of the grokking run).

The loop, schedules, checkpoints and curve files are the training loop's (`sae_trainer.SaeTrainer`); the
parts handed to it are here:
- `Sources` (the rows): each step reads every source layer from one truncated forward
  (`source_activations`) instead of the single-layer activation buffer; b_dec of each source starts at
  that source's geometric median;
- `CrosscoderObjective`: the crosscoder's own loss, Σ_s FVU_s (+ λ · L1 weighted by the summed decoder
  norms for `--crosscoder_activation relu`); its per-step hooks are the registry's (TopK crosscoders keep
  each latent's decoder rows at joint unit norm);
- `CrosscoderCurve`: the curve's spliced CE splices the crosscoder at every source layer at once
  (`lorasae.sae.crosscoder_splice`), and the final metrics add, per source layer, its FVU, L0 and the
  spliced CE with only that layer replaced. Across models, source s is spliced into model s (latents from
  every model's activations of the batch), the curve is the mean over models and the base CE the mean of
  the models' own CEs; per-source metrics are keyed by the model's short name.
- `--positions` keeps one position of each chunk in the sources and in the splice.
One process only (no DDP), no --resume / --init_sae / --e2e yet: `check_supported` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from tabulate import tabulate
from torch import nn

from lorasae.model.ce import ce_sum_and_count, masked_lm_inputs
from lorasae.model.hooks import residual_at
from lorasae.sae import geometric_median
from lorasae.sae.crosscoder import Crosscoder
from lorasae.sae.crosscoder_splice import crosscoder_splice_fns, source_activations
from lorasae.train import distributed as dist_utils
from lorasae.train.config import TrainSaeConfig
from lorasae.train.curve import FinalStats
from lorasae.train.distributed import DistInfo
from lorasae.train.objectives import StepOutput
from lorasae.train.positions import replace_positions, select_positions
from lorasae.train.result import TrainResult


def check_supported(cfg: TrainSaeConfig, info: DistInfo) -> None:
    unsupported = [
        flag
        for flag, on in [("--resume", cfg.resume), ("--init_sae", bool(cfg.init_sae)), ("DDP", info.enabled)]
        if on
    ]
    if unsupported:
        raise ValueError(f"--architecture crosscoder does not support {', '.join(unsupported)} yet.")


class Sources:
    """The crosscoder's rows: [N, d] activations of every source for a batch of token ids."""

    def __init__(
        self, cfg: TrainSaeConfig, model: nn.Module, source_models: list[nn.Module] | None,
        sae: Crosscoder, info: DistInfo, device: torch.device,
    ):  # fmt: skip
        self.cfg, self.model, self.info, self.device = cfg, model, info, device
        self.positions = cfg.position_index
        if cfg.models:  # one source per model, all at --layer
            self.models = list(source_models or [])
            if len(self.models) != len(cfg.models):
                raise ValueError(f"--models {cfg.models}: pass the {len(cfg.models)} loaded models")
            for other in self.models:
                other.requires_grad_(False)
            self.layers = [cfg.layer] * len(cfg.models)
            self.keys: list = list(sae.cfg.sources)
        else:
            self.models = [model] * len(cfg.layers)
            self.layers = list(cfg.layers)
            self.keys = list(self.layers)

    def _hidden(self, input_ids: torch.Tensor) -> list[torch.Tensor]:
        """[B, T', d] of every source (T' = 1 with --positions)."""
        ids = input_ids.to(self.device)
        if self.cfg.models:
            xs = [residual_at(m, ids, layer) for m, layer in zip(self.models, self.layers)]
        else:
            xs = source_activations(self.model, ids, self.layers)
        return [select_positions(x, self.positions) for x in xs]

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> list[torch.Tensor]:
        return [x.reshape(-1, x.shape[-1]).float() for x in self._hidden(input_ids)]

    @torch.no_grad()
    def init_b_dec(self, sae: nn.Module, first_local_batch: torch.Tensor) -> None:
        for b, x in zip(sae.b_dec, self(first_local_batch)):
            b.data.copy_(geometric_median(x).to(b.dtype))

    def stream(self, batches: Iterator[torch.Tensor], steps: int) -> Iterator[list[torch.Tensor]]:
        del steps  # read one batch per step
        return (self(dist_utils.shard(b, self.info).to(self.device)) for b in batches)


class CrosscoderObjective:
    """The crosscoder's own loss on the sources' rows, with λ = `sparsity(step)` for its ReLU variant."""

    def __init__(self, keys: list, sparsity: Callable[[int], float]):
        self.keys, self.sparsity = keys, sparsity

    def __call__(
        self,
        sae: nn.Module,
        xs: list[torch.Tensor],
        step: int,
        dead_mask: torch.Tensor | None,
        world_size: int,
    ) -> StepOutput:
        del dead_mask, world_size  # no AuxK; one process
        out = sae(xs, sparsity_coef=self.sparsity(step))
        z = out.z.detach()
        per_source = {
            f"fvu_L{key}" if isinstance(key, int) else f"fvu_{key}": float(v)
            for key, v in zip(self.keys, out.fvu.detach())
        }
        metrics = {
            "loss": float(out.loss.detach()),
            "fvu": float(out.fvu.detach().mean()),
            **per_source,
            "l0": float((z > 0).sum(-1).float().mean()),
        }
        idx = torch.arange(z.shape[-1], device=z.device).expand(z.shape)
        return StepOutput(out.loss, metrics["loss"], z, idx, z.shape[0], metrics, {}, out)


class CrosscoderCurve:
    """Curve points = the mean over sources of the validation CE with that source alone spliced."""

    label, name, metadata = "val CE", "val_ce", "spliced_val_ce"

    def __init__(
        self,
        cfg: TrainSaeConfig,
        sources: Sources,
        sae: Crosscoder,
        curve_val: torch.Tensor,
        val: torch.Tensor,
    ):
        self.cfg, self.sources, self.sae, self.curve_val, self.val = cfg, sources, sae, curve_val, val

    def prepare(self) -> None:
        """Nothing to build: its curve splices every source layer in turn, the full forward each time."""

    def value(self) -> float:
        return self.spliced_ce()

    def base(self) -> float | None:
        return self.spliced_ce(with_sae=False)

    def spliced_ce(self, with_sae: bool = True, only: list | None = None) -> float:
        """Mean CE on the curve's validation chunks with the crosscoder spliced at the layers in `only`
        (all at once); the original model with `with_sae=False`. With `only=None`, the curve's value: the
        mean over source layers of the CE with that one layer spliced. (All layers at once is not the
        curve's value: the last source's reconstruction, computed from the unspliced pass, overrides
        whatever the earlier splices changed, so it equals splicing the last layer alone.)"""
        src = self.sources
        if self.cfg.models or src.positions is not None:
            return self._source_ce(with_sae, only)
        if with_sae and only is None:
            return sum(self.spliced_ce(only=[layer]) for layer in src.layers) / len(src.layers)
        fns = (lambda ids: crosscoder_splice_fns(self.sae, src.model, ids, only)) if with_sae else None
        total, count = ce_sum_and_count(src.model, self.curve_val, self.cfg.val_batch_size, fns)
        return total / count

    def _source_ce(self, with_sae: bool, only: list | None) -> float:
        """`spliced_ce` across models or at `--positions`: `only` lists source keys (None: the mean over
        sources of the CE with that source alone spliced; without the SAE, the mean of the models' CEs)."""
        src = self.sources
        picked = [i for i, key in enumerate(src.keys) if only is None or key in only]
        if not with_sae:
            models = {id(m): m for m in src.models}.values()
            ces = [
                ce_sum_and_count(m, self.curve_val, self.cfg.val_batch_size, None, src.positions)
                for m in models
            ]
            return sum(t / c for t, c in ces) / len(ces)
        if only is None:
            return sum(self._source_ce(True, [src.keys[i]]) for i in picked) / len(picked)
        model = src.models[picked[0]]
        if any(src.models[i] is not model for i in picked):
            raise ValueError("sources of different models are spliced one at a time")

        def fns(ids: torch.Tensor) -> dict:
            x_hat = self.sae.reconstruct(src(ids))
            return {
                src.layers[i]: lambda h, rec=x_hat[i]: replace_positions(h, rec, src.positions)
                for i in picked
            }

        total, count = ce_sum_and_count(model, self.curve_val, self.cfg.val_batch_size, fns, src.positions)
        return total / count

    @torch.no_grad()
    def _source_stats(self) -> tuple[list[float], float, float]:
        """(FVU of each source, L0, share of latents never active) over every validation token."""
        n = len(self.sources.layers)
        err = torch.zeros(n, dtype=torch.float64)
        sq = torch.zeros(n, dtype=torch.float64)
        sums: list[torch.Tensor] = [torch.zeros(d, dtype=torch.float64) for d in self.sae.cfg.d_in]
        active, tokens = 0.0, 0
        fired = torch.zeros(self.sae.cfg.d_sae, dtype=torch.bool)
        for ids in self.val.split(self.cfg.val_batch_size):
            xs = self.sources(masked_lm_inputs(self.sources.model, ids))  # a masked LM trains on these too
            z = self.sae.encode(xs)
            for s, (x, x_hat) in enumerate(zip(xs, self.sae.decode(z))):
                xd = x.double().cpu()
                err[s] += (x_hat.double().cpu() - xd).pow(2).sum()
                sq[s] += xd.pow(2).sum()
                sums[s] += xd.sum(0)
            active += float((z > 0).sum())
            tokens += z.shape[0]
            fired |= (z > 0).any(0).cpu()
        variance = [float(sq[s] - tokens * (sums[s] / tokens).pow(2).sum()) for s in range(n)]
        fvus = [float(err[s]) / variance[s] for s in range(n)]
        return fvus, active / tokens, 1.0 - float(fired.float().mean())

    def final(self) -> FinalStats:
        """The mean FVU over sources, L0, never-active latents, and per source its FVU and the spliced CE
        with only that source replaced."""
        fvus, l0, never = self._source_stats()
        per_source = {
            key: {"val_fvu": fvu, "spliced_ce_this_layer_only": self.spliced_ce(only=[key])}
            for key, fvu in zip(self.sources.keys, fvus)
        }
        return FinalStats(sum(fvus) / len(fvus), l0, never, per_source)

    def report(self, result: TrainResult) -> None:
        """The per-source table after the summary line."""
        rows = [[key, m["val_fvu"], m["spliced_ce_this_layer_only"]] for key, m in result.per_source.items()]
        last = result.val_loss[-1] if result.val_loss else float("nan")
        rows.append(["mean (the curve)", result.val_fvu, last])
        if not self.cfg.models:  # several models are never spliced at once
            rows.append(["all at once", result.val_fvu, self.spliced_ce(only=self.sources.layers)])
        head = "source model" if self.cfg.models else "source layer"
        print(tabulate(rows, headers=[head, "val FVU", "spliced CE"], floatfmt=".4f", tablefmt="github"))
