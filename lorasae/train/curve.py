"""SaeTrainer's curve (SPEC §3.3): the spliced validation CE at each curve point (the clean prefix reused,
`lorasae/prefix.py`), the training clock the curve's minutes come from (evaluation and checkpoint
writing excluded) and the curve files. A mixin of `SaeTrainer`; the attributes it uses (`cfg`, `model`,
`sae`, `curve_val`, `info`, `val_loss`, `minutes`, ...) are the trainer's."""

from __future__ import annotations

import time

import torch

from lorasae.atomic import atomic_write_json
from lorasae.prefix import PrefixCache, build_prefix_cache
from lorasae.train.logger import TrainLogger
from lorasae.train.state import curve_path
from lorasae.train.validation import rank_share, spliced_ce


class CurveSteps:
    # --- evaluation --------------------------------------------------------------------------------
    def spliced_ce(self, with_sae: bool = True) -> float:
        """Mean validation CE with the SAE spliced (or of the original model), over all ranks."""
        cfg = self.cfg
        sae = self.sae if with_sae else None
        return spliced_ce(
            self.model, sae, cfg.layer, self.curve_val, cfg.val_batch_size, self.special_ids, self.info,
            self.prefix_cache(),
            cfg.position_index,
        )  # fmt: skip

    def prefix_cache(self) -> PrefixCache | None:
        """The curve chunks' residual after the SAE's layer (this rank's share), built on first use;
        None where every curve point runs the full forward (`lorasae/prefix.py`)."""
        if not self._prefix_built:
            cfg = self.cfg
            self._prefix, note = build_prefix_cache(
                self.model, rank_share(self.curve_val, self.info), cfg.layer, cfg.val_batch_size,
                int(cfg.val_prefix_cache_gib * 2**30),
            )  # fmt: skip
            self._prefix_built = True
            if self.info.is_main:
                print(note)
        return self._prefix

    # --- timing (training minutes exclude evaluation and checkpoint writing) -----------------------
    def _pause_clock(self) -> None:
        if self._clock is not None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.train_minutes += (time.perf_counter() - self._clock) / 60
            self._clock = None

    def _start_clock(self) -> None:
        self._clock = time.perf_counter()

    # --- outputs (main rank) -----------------------------------------------------------------------
    def _write_curves(self) -> None:
        """The curve so far (val CE and cumulative training minutes, point i at progress i/(n-1) once
        complete), written atomically by the main rank (`state.curve_path`: its own file unless it is
        the model's default SAE)."""
        if self.info.is_main:
            atomic_write_json(self.curve_file("val_loss"), self.val_loss)
            atomic_write_json(self.curve_file("time"), self.minutes)

    def curve_file(self, quantity: str):
        """This run's curve file of `quantity` (`val_loss` or `time`)."""
        return curve_path(self.cfg, quantity, self.shape)

    def _record_curve_points(self, count: int, logger: TrainLogger | None) -> None:
        value = self.spliced_ce()
        self.val_loss += [value] * count
        self.minutes += [self.train_minutes] * count
        self._write_curves()
        if logger is not None:
            logger.eval(self.step, value, self.train_minutes)
