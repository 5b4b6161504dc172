"""`train_sae.py --hidden_modification`: SaeTrainer's loop on f(x) instead of the residual x
(`lorasae/train/modification.py`; `sae_trainer.ModifiedTargetTrainer` mixes `ModifiedTargetSteps` into
SaeTrainer). Every place activations are produced goes through `rows` (the activation buffer, the b_dec
initialisation, the final FVU); the SAE is never spliced, since it does not reconstruct the residual
stream: the curve's points are the validation FVU on f(x) (on the curve's first chunks, as a normal
curve's CE) and there is no original-model CE. One process only (rows at special positions are dropped,
so ranks' batches would differ in size)."""

from __future__ import annotations

import torch

from lorasae.errors import LorasaeError
from lorasae.train.modification import HiddenModification, load_modification
from lorasae.train.validation import reconstruction_stats


class ModifiedTargetSteps:
    """The modified target's parts of `SaeTrainer` (mixed in before it); `modification` (already checked
    and loaded by train_sae) or loaded here from `cfg.modification_file`. The attributes used (`cfg`,
    `model`, `sae`, `curve_val`, `special_ids`, ...) are SaeTrainer's."""

    curve_label = "val FVU of f(x)"
    curve_name = "val_fvu"
    curve_metadata = "val_fvu_of_target"
    reuses_prefix = False  # its curve is an FVU, not a spliced CE

    def __init__(self, *args, modification: HiddenModification | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        if self.info.enabled:
            raise LorasaeError("--hidden_modification trains in one process (not under torchrun)")
        found = modification or load_modification(self.cfg, self.d_model, self.device)
        self.modification = found.to(self.device).with_special_ids(self.special_ids)

    def rows(self, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """f(x) of the residual: the modification's rows (special positions left out if its file says so)."""
        return self.modification.rows(hidden, ids)

    def spliced_ce(self, with_sae: bool = True) -> float | None:
        """The curve's value: the validation FVU on f(x) over the curve's chunks (a modified-target SAE has
        no spliced CE); None for the original model (no base CE)."""
        if not with_sae:
            return None
        cfg = self.cfg
        stats = reconstruction_stats(
            self.model, self.sae, cfg.layer, self.curve_val, cfg.val_batch_size, self.info, self.rows
        )
        return stats.fvu
