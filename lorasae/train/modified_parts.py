"""`train_sae.py --hidden_modification`: the parts that train on f(x) instead of the residual x
(`lorasae/train/modification.py`). The rows are the modification's (`LayerRows` with its `rows`: the
activation buffer, the b_dec initialisation, the final FVU); the SAE is never spliced, since it does not
reconstruct the residual stream: the curve's points are the validation FVU on f(x) (on the curve's first
chunks, as a normal curve's CE) and there is no original-model CE. One process only (rows at special
positions are dropped, so ranks' batches would differ in size)."""

from __future__ import annotations

from lorasae.core.errors import LorasaeError
from lorasae.train.curve import SplicedCurve
from lorasae.train.distributed import DistInfo
from lorasae.train.modification import HiddenModification
from lorasae.train.validation import reconstruction_stats


def check_one_process(info: DistInfo) -> None:
    if info.enabled:
        raise LorasaeError("--hidden_modification trains in one process (not under torchrun)")


class TargetFvuCurve(SplicedCurve):
    """Curve points = the validation FVU on f(x) over the curve's chunks (a modified-target SAE has no
    spliced CE); no value for the original model. Its final statistics are `SplicedCurve`'s, on f(x)."""

    label = "val FVU of f(x)"
    name = "val_fvu"
    metadata = "val_fvu_of_target"

    def prepare(self) -> None:
        """Nothing to build: the curve is an FVU, not a spliced CE."""

    def value(self) -> float:
        cfg = self.cfg
        stats = reconstruction_stats(
            self.model, self.sae, cfg.layer, self.curve_val, cfg.val_batch_size, self.info, self.rows_fn
        )
        return stats.fvu

    def base(self) -> float | None:
        return None


def modification_rows(modification: HiddenModification, special_ids: list[int], device) -> HiddenModification:
    """The modification on the run's device, dropping the tokenizer's special positions if its file says so."""
    return modification.to(device).with_special_ids(special_ids)
