"""The original model inside a PeftModel, switched on and off cheaply once per training step.

`PeftModel.disable_adapter()` first computes the model's adapter status over every layer (about 7 ms on
the 4-layer built-in model, a fifth of a LoRA step there), and `model.eval()` / `model.train()` walk every
module twice. `BaseView` finds the tuner layers once and flips only them; it switches to eval mode only
when some module outside the adapters behaves differently in training (a dropout with p > 0 or an
attention dropout > 0): the LoRA dropout is inside the adapters, which are off for the target anyway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


def _train_sensitive(model: nn.Module) -> bool:
    """Whether any module outside the LoRA adapters acts differently in training mode."""
    for name, module in model.named_modules():
        if "lora_" in name:
            continue
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return True
        if isinstance(module, nn.modules.batchnorm._NormBase):
            return True
        for attr in ("attention_dropout", "dropout", "dropout_rate"):
            value = getattr(module, attr, 0.0)
            if isinstance(value, float) and value > 0:
                return True
    return False


class BaseView:
    """`with view.base():` runs the PeftModel as the original model (adapters off, eval mode where it
    matters); the previous adapter state and training mode are restored afterwards. For forwards under
    `torch.no_grad()` only (requires_grad of the adapter weights is left as it is)."""

    def __init__(self, model: nn.Module):
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.model = model
        self.layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        self.needs_eval = _train_sensitive(model)

    @contextlib.contextmanager
    def base(self) -> Iterator[None]:
        was_disabled = [layer.disable_adapters for layer in self.layers]
        was_training = self.model.training
        # peft's `enable_adapters(False)` also resets requires_grad on every adapter weight (and back on
        # enabling); the target runs under no_grad, so only the flag its forward reads is flipped
        for layer in self.layers:
            layer._disable_adapters = True
        if self.needs_eval and was_training:
            self.model.eval()
        try:
            yield
        finally:
            for layer, disabled in zip(self.layers, was_disabled):
                layer._disable_adapters = disabled
            if self.needs_eval and was_training:
                self.model.train()
