"""Forward hooks on the residual stream after decoder layer L (TransformerLens `blocks.L.hook_resid_post`):
splicing a function into the forward pass, and a truncated forward that stops at layer L."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from lorasae.models import check_layer, decoder_layers

SpliceFn = Callable[[torch.Tensor], torch.Tensor]


def _replace_hidden(output, fn: SpliceFn):
    # transformers 5 decoder layers return a tensor; older ones and GPT-2 style blocks return a tuple
    if isinstance(output, torch.Tensor):
        return fn(output)
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    raise TypeError(f"Unexpected decoder layer output type {type(output).__name__}")


@contextmanager
def splice(model: nn.Module, fns: Mapping[int, SpliceFn]) -> Iterator[None]:
    """Within the block, the output hidden state of each decoder layer L in `fns` is replaced by `fns[L](h)`."""
    layers = decoder_layers(model)
    with ExitStack() as stack:
        for layer, fn in fns.items():
            check_layer(model, layer)

            def hook(_module, _args, output, fn=fn):
                return _replace_hidden(output, fn)

            stack.callback(layers[layer].register_forward_hook(hook).remove)
        yield


class _StopForward(Exception):
    def __init__(self, hidden: torch.Tensor):
        self.hidden = hidden


def residual_at(
    model: nn.Module,
    input_ids: torch.Tensor,
    layer: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Residual stream after decoder layer `layer`, [B, T, d]. Nothing after that layer runs
    (no later layers, no final norm, no LM head)."""
    check_layer(model, layer)

    def stop(_module, _args, output):
        hidden = output if isinstance(output, torch.Tensor) else output[0]
        raise _StopForward(hidden)

    handle = decoder_layers(model)[layer].register_forward_hook(stop)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward as stopped:
        return stopped.hidden
    finally:
        handle.remove()
    raise RuntimeError("the forward pass finished without reaching the hooked layer")
