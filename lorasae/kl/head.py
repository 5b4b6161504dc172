"""The LM head as a function of the final hidden states, and the decoder stack that produces them, so the
full-vocabulary KL can apply the head chunk by chunk (`lorasae.kl.chunked`) instead of materialising
[B, T, V] logits. `verified_head` checks the decomposition against the model's own logits once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorasae.model.load import unwrap


@dataclass
class LogitHead:
    """The LM head as a function of the final hidden states: `softcap(h @ W.T + b)`."""

    weight: Tensor
    bias: Tensor | None = None
    softcap: float | None = None

    def __call__(self, hidden: Tensor) -> Tensor:
        logits = F.linear(hidden, self.weight, self.bias)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    @classmethod
    def from_model(cls, model: nn.Module) -> LogitHead | None:
        """The head of a transformers causal LM (Llama, Gemma-2 with its final logit soft-capping, GPT-2,
        ...), or None when it is not a plain linear layer. `verify_head` checks it against the model."""
        base = unwrap(model)
        get_head = getattr(base, "get_output_embeddings", None)
        head = get_head() if callable(get_head) else None
        head = getattr(head, "base_layer", head)  # a LoRA-wrapped head: the frozen base layer
        if not isinstance(head, nn.Linear):
            return None
        config = base.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        softcap = getattr(text_config, "final_logit_softcapping", None)
        return cls(head.weight, head.bias, float(softcap) if softcap else None)


def body_module(model: nn.Module) -> nn.Module | None:
    """The decoder stack of a transformers causal LM (`model.model` for Llama/Gemma), which returns the
    final (normed) hidden states; None if the model has no such attribute."""
    base = unwrap(model)
    prefix = getattr(base, "base_model_prefix", None)
    body = getattr(base, prefix, None) if prefix else None
    return body if isinstance(body, nn.Module) and body is not base else None


def final_hidden(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Final hidden states [B, T, d] (after the final norm, before the LM head)."""
    body = body_module(model)
    if body is None:
        raise TypeError(f"{type(unwrap(model)).__name__} has no decoder stack attribute to call.")
    out = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


@torch.no_grad()
def verify_head(
    model: nn.Module, head: LogitHead | None, input_ids: Tensor, rtol: float | None = None
) -> bool:
    """True if `head(final_hidden(model, ids))` reproduces `model(ids).logits` on `input_ids`, to `rtol`
    of the largest logit (default 1e-3; 2e-2 for 16-bit models)."""
    if head is None or body_module(model) is None:
        return False
    try:
        reference = model(input_ids=input_ids, use_cache=False).logits.float()
        mine = head(final_hidden(model, input_ids)).float()
    except (TypeError, AttributeError):
        return False
    if reference.shape != mine.shape:
        return False
    if rtol is None:
        rtol = 2e-2 if head.weight.element_size() < 4 else 1e-3
    scale = max(1.0, reference.abs().max().item())
    return bool(((reference - mine).abs().max() <= rtol * scale).item())


def verified_head(model: nn.Module, sample_ids: Tensor) -> LogitHead | None:
    """The model's `LogitHead` if `head(final_hidden(model, ids))` reproduces its logits on `sample_ids`
    (a few tokens suffice), else None: the caller then computes the KL from full logits."""
    head = LogitHead.from_model(model)
    return head if verify_head(model, head, sample_ids) else None
