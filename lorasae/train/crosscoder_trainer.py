"""`train_sae.py --architecture crosscoder --layers a b ...`: one dictionary over the residual streams after
several decoder layers of one model (`lorasae.sae.crosscoder.Crosscoder`, the grokking study's class), or
with `--models A B` over the output of `--layer` of several models fed the same tokens (the seed's
cross-model crosscoder: pre- and post-generalization checkpoints of the grokking run).

The loop, schedules, checkpoints and curves are `SaeTrainer`'s (`sae_trainer.CrosscoderTrainer` mixes
`CrosscoderSteps` into it); what differs is here:
- each step reads every source layer from one truncated forward (`source_activations`) instead of the
  single-layer activation buffer;
- the loss is the crosscoder's: Σ_s FVU_s (+ λ · L1 weighted by the summed decoder norms for
  `--crosscoder_activation relu`); TopK crosscoders keep each latent's decoder rows at joint unit norm;
- b_dec of each source starts at that source's geometric median;
- the curve's spliced CE splices the crosscoder at every source layer at once
  (`lorasae.sae.crosscoder_splice`), and the final metrics add, per source layer, its FVU, L0 and the
  spliced CE with only that layer replaced. Across models, source s is spliced into model s (latents from
  every model's activations of the batch), the curve is the mean over models and the base CE the mean of
  the models' own CEs; per-source metrics are keyed by the model's short name.
- `--positions` keeps one position of each chunk in the sources and in the splice.
One process only (no DDP), no --resume / --init_sae / --e2e yet: the constructor says so.
"""

from __future__ import annotations

import math

import torch
from tabulate import tabulate
from torch import nn

from lorasae.eval_ce import ce_sum_and_count, masked_lm_inputs
from lorasae.hooks import residual_at
from lorasae.sae import geometric_median
from lorasae.sae.crosscoder import Crosscoder
from lorasae.sae.crosscoder_splice import crosscoder_splice_fns, source_activations
from lorasae.train.architecture import step_sparsity
from lorasae.train.positions import replace_positions, select_positions
from lorasae.train.result import TrainResult, summary_line
from lorasae.train.state import checkpoint_dir


class CrosscoderSteps:
    """The crosscoder's parts of `SaeTrainer` (mixed in before it: `sae_trainer.CrosscoderTrainer`);
    the attributes used (`cfg`, `model`, `sae`, `optimizer`, ...) are SaeTrainer's."""

    harvests = False

    def __init__(self, *args, source_models: list[nn.Module] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.cfg
        unsupported = [
            flag
            for flag, on in [
                ("--resume", cfg.resume),
                ("--init_sae", bool(cfg.init_sae)),
                ("DDP", self.info.enabled),
            ]
            if on
        ]
        if unsupported:
            raise ValueError(f"--architecture crosscoder does not support {', '.join(unsupported)} yet.")
        assert isinstance(self.sae, Crosscoder)
        self.positions = cfg.position_index
        if cfg.models:  # one source per model, all at --layer
            self.source_models = list(source_models or [])
            if len(self.source_models) != len(cfg.models):
                raise ValueError(f"--models {cfg.models}: pass the {len(cfg.models)} loaded models")
            for other in self.source_models:
                other.requires_grad_(False)
            self.layers = [cfg.layer] * len(cfg.models)
            self.source_keys: list = list(self.sae.cfg.sources)
        else:
            self.source_models = [self.model]
            self.layers = list(cfg.layers)
            self.source_keys = list(self.layers)

    # --- the sources ---------------------------------------------------------------------------------
    def _source_hidden(self, input_ids: torch.Tensor) -> list[torch.Tensor]:
        """[B, T', d] of every source (T' = 1 with --positions)."""
        ids = input_ids.to(self.device)
        if self.cfg.models:
            xs = [residual_at(m, ids, layer) for m, layer in zip(self.source_models, self.layers)]
        else:
            xs = source_activations(self.model, ids, self.layers)
        return [select_positions(x, self.positions) for x in xs]

    @torch.no_grad()
    def sources(self, input_ids: torch.Tensor) -> list[torch.Tensor]:
        """[N, d] activations of every source for a batch of token ids."""
        return [x.reshape(-1, x.shape[-1]).float() for x in self._source_hidden(input_ids)]

    @torch.no_grad()
    def init_b_dec(self, first_local_batch: torch.Tensor) -> None:
        for b, x in zip(self.sae.b_dec, self.sources(first_local_batch)):
            b.data.copy_(geometric_median(x).to(b.dtype))
        self.needs_b_dec_init = False

    # --- evaluation --------------------------------------------------------------------------------
    def spliced_ce(self, with_sae: bool = True, only: list[int] | None = None) -> float:
        """Mean CE on the curve's validation chunks with the crosscoder spliced at the layers in `only`
        (all at once); the original model with `with_sae=False`. With `only=None`, the curve's value: the
        mean over source layers of the CE with that one layer spliced. (All layers at once is not the
        curve's value: the last source's reconstruction, computed from the unspliced pass, overrides
        whatever the earlier splices changed, so it equals splicing the last layer alone.)"""
        if self.cfg.models or self.positions is not None:
            return self._source_ce(with_sae, only)
        if with_sae and only is None:
            return sum(self.spliced_ce(only=[layer]) for layer in self.layers) / len(self.layers)
        fns = (lambda ids: crosscoder_splice_fns(self.sae, self.model, ids, only)) if with_sae else None
        total, count = ce_sum_and_count(self.model, self.curve_val, self.cfg.val_batch_size, fns)
        return total / count

    def _source_ce(self, with_sae: bool, only: list | None) -> float:
        """`spliced_ce` across models or at `--positions`: `only` lists source keys (None: the mean over
        sources of the CE with that source alone spliced; without the SAE, the mean of the models' CEs)."""
        picked = [i for i, key in enumerate(self.source_keys) if only is None or key in only]
        if not with_sae:
            models = {id(m): m for m in self.source_models}.values()
            ces = [
                ce_sum_and_count(m, self.curve_val, self.cfg.val_batch_size, None, self.positions)
                for m in models
            ]
            return sum(t / c for t, c in ces) / len(ces)
        if only is None:
            return sum(self._source_ce(True, [self.source_keys[i]]) for i in picked) / len(picked)
        model = self.source_models[picked[0]]
        if any(self.source_models[i] is not model for i in picked):
            raise ValueError("sources of different models are spliced one at a time")

        def fns(ids: torch.Tensor) -> dict:
            x_hat = self.sae.reconstruct(self.sources(ids))
            return {
                self.layers[i]: lambda h, rec=x_hat[i]: replace_positions(h, rec, self.positions)
                for i in picked
            }

        total, count = ce_sum_and_count(model, self.curve_val, self.cfg.val_batch_size, fns, self.positions)
        return total / count

    # --- one optimiser step ------------------------------------------------------------------------
    def _train_step(
        self, sae: nn.Module, input_ids: torch.Tensor | None = None, acts: torch.Tensor | None = None
    ) -> dict[str, float]:
        cfg, coder = self.cfg, self.sae
        assert input_ids is not None
        xs = self.sources(input_ids)
        out = sae(xs, sparsity_coef=step_sparsity(cfg, self.step))
        loss = float(out.loss.detach())
        if not math.isfinite(loss):
            self._fail(f"the loss became {loss}")
        out.loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(coder.parameters(), cfg.max_grad_norm))
        if not math.isfinite(grad_norm):
            self._fail(f"the gradient norm became {grad_norm}")
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if coder.cfg.activation == "topk":  # the ReLU variant's L1 is weighted by the norms instead
            coder.set_decoder_norm_to_unit_norm()
        z = out.z.detach()
        self._update_dead(z, torch.arange(z.shape[-1], device=z.device).expand(z.shape), z.shape[0])
        per_source = {
            f"fvu_L{key}" if isinstance(key, int) else f"fvu_{key}": float(v)
            for key, v in zip(self.source_keys, out.fvu.detach())
        }
        return {
            "loss": loss,
            "fvu": float(out.fvu.detach().mean()),
            **per_source,
            "l0": float((z > 0).sum(-1).float().mean()),
            "dead_frac": float((self.tokens_since_fired >= cfg.dead_after_tokens).float().mean()),
            "lr": lr,
            "grad_norm": grad_norm,
        }

    # --- final metrics -----------------------------------------------------------------------------
    @torch.no_grad()
    def _source_stats(self) -> tuple[list[float], float, float]:
        """(FVU of each source, L0, share of latents never active) over every validation token."""
        n = len(self.layers)
        err = torch.zeros(n, dtype=torch.float64)
        sq = torch.zeros(n, dtype=torch.float64)
        sums: list[torch.Tensor] = [torch.zeros(d, dtype=torch.float64) for d in self.sae.cfg.d_in]
        active, tokens = 0.0, 0
        fired = torch.zeros(self.sae.cfg.d_sae, dtype=torch.bool)
        for ids in self.split.val.split(self.cfg.val_batch_size):
            xs = self.sources(masked_lm_inputs(self.model, ids))  # a masked LM trains on these too
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

    def _result(self, train_metrics: dict[str, float]) -> TrainResult:
        fvus, l0, never = self._source_stats()
        per_source = {
            key: {"val_fvu": fvu, "spliced_ce_this_layer_only": self.spliced_ce(only=[key])}
            for key, fvu in zip(self.source_keys, fvus)
        }
        result = TrainResult(
            steps=self.step,
            tokens=self.step * self.cfg.tokens_per_step,
            base_ce=self.base_ce,
            val_loss=list(self.val_loss),
            minutes=list(self.minutes),
            val_fvu=sum(fvus) / len(fvus),
            val_l0=l0,
            val_dead_fraction=never,
            train_dead_fraction=float((self.tokens_since_fired >= self.cfg.dead_after_tokens).float().mean()),
            final_dir=checkpoint_dir(self.cfg),
            train_metrics=dict(train_metrics),
            checkpoint_dirs={pct: checkpoint_dir(self.cfg, pct) for pct in self.checkpoints},
            state_path=self.state_file,
            per_source=per_source,
        )
        print(summary_line(self.cfg, result))
        rows = [[layer, m["val_fvu"], m["spliced_ce_this_layer_only"]] for layer, m in per_source.items()]
        rows.append(
            ["mean (the curve)", result.val_fvu, self.val_loss[-1] if self.val_loss else float("nan")]
        )
        if not self.cfg.models:  # several models are never spliced at once
            rows.append(["all at once", result.val_fvu, self.spliced_ce(only=self.layers)])
        head = "source model" if self.cfg.models else "source layer"
        print(tabulate(rows, headers=[head, "val FVU", "spliced CE"], floatfmt=".4f", tablefmt="github"))
        return result
