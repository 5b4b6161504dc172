"""`train_sae.py --architecture transcoder | skip_transcoder`: the parts of a run whose dictionary reads
layer L's MLP input and reconstructs its MLP output (`lorasae.sae.transcoder`).

- `MlpRows`: each step's rows are the pair (MLP input, MLP output) at --layer of this rank's batch
  (`lorasae.model.hooks.mlp_io_at`: the forward stops after that MLP), fed to the trainer's
  `ReconstructionObjective` as `sae(x, dead_mask, target=y)`; b_dec starts at the geometric median of the
  first global batch's MLP outputs (the space it lives in).
- `--objective kl --init_sae T` (KL fine-tuning): `MlpTokenIds` (this rank's token ids) and
  `transcoder_kl_step`, the LoRA trainer's KL to the original model (`objectives.kl_to_original`) with
  layer L's MLP output replaced by the transcoder's prediction from the MLP input (`hooks.splice` at
  the MLP, the splice of every CE and eval, given the transcoder's training forward so that AuxK and the
  L1 see the step) + --kl_mse_weight × the FVU of that MLP output (`E2eObjective` runs it).
- `TranscoderCurve`: a curve point is the validation CE with layer L's MLP output replaced by the
  transcoder's reconstruction (`lorasae.model.hooks.mlp_splice`; the attention and norms of layer L still run,
  so the clean residual is cached after layer L − 1, `lorasae/model/prefix.py`, and each point runs
  layers L… only; at layer 0 every point runs the full forward); the final
  statistics are the FVU of the MLP output, L0 and never-active latents over every validation token.

Every position (no --positions), one forward per step (no harvesting), one process or DDP; --e2e
(a transcoder trained on the KL from scratch) is not supported."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from lorasae.kl import LogitHead
from lorasae.model.ce import ce_sum_and_count
from lorasae.model.hooks import MLP, mlp_io_at, splice
from lorasae.model.prefix import reusable_prefix_layer
from lorasae.sae import geometric_median
from lorasae.sae.splice import splice_fn
from lorasae.train import distributed as dist_utils
from lorasae.train.config import TrainSaeConfig
from lorasae.train.curve import FinalStats, SplicedCurve
from lorasae.train.distributed import DistInfo
from lorasae.train.objectives import StepStats, kl_step_terms, kl_to_original
from lorasae.train.validation import rank_share

TRANSCODERS = ("transcoder", "skip_transcoder")


def check_supported(cfg: TrainSaeConfig) -> None:
    """One line naming what a transcoder run does not support."""
    unsupported = [
        flag
        for flag, on in [
            ("--positions", cfg.positions != "all"),
            ("--e2e", cfg.e2e),
            ("--hidden_modification", cfg.hidden_modification != "none"),
        ]
        if on
    ]
    if unsupported:
        raise ValueError(f"--architecture {cfg.architecture} does not support {', '.join(unsupported)} yet.")


def _flat(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1]).float()


class MlpRows:
    """(MLP input, MLP output) rows [n, d] of layer `layer`, one model forward per step."""

    def __init__(self, model: nn.Module, layer: int, info: DistInfo, device: torch.device):
        self.model, self.layer, self.info, self.device = model, layer, info, device

    @torch.no_grad()
    def rows(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        mlp_in, mlp_out = mlp_io_at(self.model, ids.to(self.device), self.layer)
        return _flat(mlp_in), _flat(mlp_out)

    @torch.no_grad()
    def init_b_dec(self, sae: nn.Module, first_local_batch: Tensor) -> None:
        """b_dec = geometric median of the first global batch's MLP outputs (gathered over ranks)."""
        targets = dist_utils.all_gather_cat(self.rows(first_local_batch)[1])
        sae.b_dec.data.copy_(geometric_median(targets).to(sae.b_dec.dtype))

    def stream(self, batches: Iterator[Tensor], steps: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The row pairs of the next `steps` steps from the global batches of token ids `batches`."""
        for _, batch in zip(range(steps), batches, strict=False):
            yield self.rows(dist_utils.shard(batch, self.info))


class MlpTokenIds(MlpRows):
    """The KL fine-tune's rows: this rank's token ids of each step (`transcoder_kl_step` runs the model)."""

    def stream(self, batches: Iterator[Tensor], steps: int) -> Iterator[Tensor]:  # type: ignore[override]
        for _, batch in zip(range(steps), batches, strict=False):
            yield dist_utils.shard(batch, self.info).to(self.device)


def transcoder_kl_step(
    model: nn.Module,
    sae: nn.Module,
    input_ids: Tensor,
    layer: int,
    auxk_alpha: float,
    dead_mask: Tensor | None,
    head: LogitHead | None = None,
    chunk_size: int | None = None,
    sparsity_coef: float = 0.0,
    mse_weight: float = 0.0,
) -> tuple[Tensor, object, StepStats]:
    """KL(p_original ‖ p_spliced) summed over positions / batch size, layer `layer`'s MLP output replaced
    by the transcoder's prediction from its input, + `mse_weight` · the FVU of that prediction against
    the MLP's own output (+ AuxK, + λ·L1): `objectives.e2e_step` at the MLP (its arguments)."""
    seen: dict[str, object] = {}

    def predict(mlp_in: Tensor, mlp_out: Tensor) -> Tensor:
        x, y = _flat(mlp_in), _flat(mlp_out).detach()
        out = sae(x, dead_mask, target=y)
        seen["x"], seen["y"], seen["out"] = x, y, out
        return out.x_hat.reshape(mlp_out.shape).to(mlp_out.dtype)

    predict.splice_site = MLP  # type: ignore[attr-defined]
    kl = kl_to_original(model, input_ids, {layer: predict}, head, chunk_size)
    x, y, out = seen["x"], seen["y"], seen["out"]
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    return kl_step_terms(kl, x, out, auxk_alpha, sparsity_coef, mse_weight, target=y)


class TranscoderCurve(SplicedCurve):
    """Curve points = the validation CE with layer L's MLP output replaced by the transcoder's."""

    def cache_layer(self) -> int | None:
        """Layer L − 1: layer L's MLP is replaced, its attention runs again (None at layer 0)."""
        return reusable_prefix_layer(self.cfg.layer, MLP)

    def _ce(self, sae: nn.Module | None) -> float:
        cfg = self.cfg
        mine = rank_share(self.curve_val, self.info)
        fns = {cfg.layer: splice_fn(sae, skip_special=False)} if sae is not None else {}
        prefix = self.prefix_cache()
        if prefix is not None:  # only layers L… run; the cache checks the splice leaves its layers alone
            total, count = prefix.ce_sum_and_count(cfg.val_batch_size, fns)
        else:
            with splice(self.model, fns):  # splice_fn marks a transcoder's function for the MLP output
                total, count = (
                    ce_sum_and_count(self.model, mine, cfg.val_batch_size) if len(mine) else (0.0, 0)
                )
        device = next(self.model.parameters()).device
        sums = dist_utils.all_reduce_sum(
            torch.tensor([total, float(count)], dtype=torch.float64, device=device)
        )
        return float(sums[0] / sums[1])

    @torch.no_grad()
    def final(self) -> FinalStats:
        """FVU of the MLP output, L0 and never-active latents over every validation token."""
        cfg, sae = self.cfg, self.sae
        rows = MlpRows(self.model, cfg.layer, self.info, sae.W_dec.device)
        err = active = tokens = sq = torch.zeros((), dtype=torch.float64, device=sae.W_dec.device)
        total = torch.zeros(sae.cfg.d_out, dtype=torch.float64, device=sae.W_dec.device)
        fired = torch.zeros(sae.cfg.d_sae, dtype=torch.int32, device=sae.W_dec.device)
        for ids in rank_share(self.val, self.info).split(cfg.val_batch_size):
            x, y = rows.rows(ids)
            acts, idx = sae.encode_topk(x)
            y_hat = sae.reconstruct(x).double()
            err = err + (y_hat - y.double()).pow(2).sum()
            active, tokens = active + (acts > 0).sum(), tokens + len(x)
            total, sq = total + y.double().sum(0), sq + y.double().pow(2).sum()
            fired.index_fill_(0, idx[acts > 0], 1)
        sums = dist_utils.all_reduce_sum(torch.cat([torch.stack([err, active, tokens, sq]), total]))
        fired = dist_utils.all_reduce_sum(fired)
        variance = sums[3] - sums[4:].pow(2).sum() / sums[2]
        return FinalStats(
            float(sums[0] / variance), float(sums[1] / sums[2]), float((fired == 0).double().mean())
        )
