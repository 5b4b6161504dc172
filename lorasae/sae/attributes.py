"""What every dictionary exposes the same way, read from its decoder and its config: `dtype`, `device`,
`hook_layer` and `skip_special_tokens` (a mixin of `TopKSAE` and `ReluSAE`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class DictionaryAttributes:
    W_dec: Tensor
    cfg: Any

    @property
    def dtype(self) -> torch.dtype:
        return self.W_dec.dtype

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    @property
    def hook_layer(self) -> int | None:
        return self.cfg.hook_layer

    @property
    def skip_special_tokens(self) -> bool:
        return self.cfg.skip_special_tokens
