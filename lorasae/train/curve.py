"""The curve part handed to the training loop (SPEC §3.3): what a curve point measures, the original
model's value, and the final statistics over the validation chunks (`--final_val_tokens`, default all).
`SplicedCurve`: the validation CE with the SAE spliced at its layer (the clean prefix reused,
`lorasae/model/prefix.py`). Other kinds:
`modified_parts.TargetFvuCurve` (the FVU of f(x)), `crosscoder_parts.CrosscoderCurve` (spliced at its
sources)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lorasae.model.prefix import PrefixCache, build_prefix_cache
from lorasae.train.config import TrainSaeConfig
from lorasae.train.distributed import DistInfo
from lorasae.train.result import TrainResult
from lorasae.train.rows import RowsFn
from lorasae.train.validation import rank_share, reconstruction_stats, spliced_ce


@dataclass
class FinalStats:
    """The run's final statistics over its validation chunks (`--final_val_tokens`, default all)."""

    val_fvu: float
    val_l0: float
    never_active: float  # share of latents that never fired on them
    per_source: dict = field(default_factory=dict)  # multi-source dictionaries: {source: metrics}


class SplicedCurve:
    """Curve points = the mean validation CE on the curve's chunks with the SAE spliced after its layer."""

    label = "val CE"  # what the curve holds (in messages)
    name = "val_ce"  # its name on the progress bar
    metadata = "spliced_val_ce"  # the checkpoints' cfg.json key of the curve's last value

    def __init__(
        self,
        cfg: TrainSaeConfig,
        model: nn.Module,
        sae: nn.Module,
        curve_val: torch.Tensor,
        val: torch.Tensor,
        special_ids: list[int],
        info: DistInfo,
        rows_fn: RowsFn,
        reuses_prefix: bool = True,
    ):
        self.cfg, self.model, self.sae, self.curve_val, self.val = cfg, model, sae, curve_val, val
        self.special_ids, self.info, self.rows_fn = special_ids, info, rows_fn
        self.reuses_prefix = reuses_prefix
        self._prefix: PrefixCache | None = None
        self._prefix_built = False

    def prepare(self) -> None:
        """Before the progress bar: build the prefix cache (its note printed first)."""
        if self.reuses_prefix:
            self.prefix_cache()

    def cache_layer(self) -> int | None:
        """The last layer whose clean output the spliced forward shares (None: none): the SAE's layer."""
        return self.cfg.layer

    def prefix_cache(self) -> PrefixCache | None:
        """The curve chunks' residual after `cache_layer()` (this rank's share), built on first use;
        None where every curve point runs the full forward (`lorasae/model/prefix.py`)."""
        layer = self.cache_layer()
        if not self.reuses_prefix or layer is None:
            return None
        if not self._prefix_built:
            cfg = self.cfg
            self._prefix, note = build_prefix_cache(
                self.model, rank_share(self.curve_val, self.info), layer, cfg.val_batch_size,
                int(cfg.val_prefix_cache_gib * 2**30),
            )  # fmt: skip
            self._prefix_built = True
            if self.info.is_main:
                print(note)
        return self._prefix

    def _ce(self, sae: nn.Module | None) -> float:
        cfg = self.cfg
        return spliced_ce(
            self.model, sae, cfg.layer, self.curve_val, cfg.val_batch_size, self.special_ids, self.info,
            self.prefix_cache(), cfg.position_index,
        )  # fmt: skip

    def value(self) -> float:
        """A curve point: the CE with the SAE spliced, over all ranks."""
        return self._ce(self.sae)

    def base(self) -> float | None:
        """The original model's CE on the same chunks."""
        return self._ce(None)

    def final(self) -> FinalStats:
        """FVU, L0 and never-active latents of the SAE's rows over the final statistics' chunks."""
        cfg = self.cfg
        stats = reconstruction_stats(
            self.model, self.sae, cfg.layer, self.val, cfg.val_batch_size, self.info, self.rows_fn,
            cfg.position_index,
        )  # fmt: skip
        return FinalStats(stats.fvu, stats.l0, stats.never_active)

    def report(self, result: TrainResult) -> None:
        """After the summary line: anything more to print (nothing for one layer)."""
        del result
