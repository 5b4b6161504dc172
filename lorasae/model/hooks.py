"""Forward hooks on the residual stream after decoder layer L (TransformerLens `blocks.L.hook_resid_post`):
splicing a function into the forward pass, and a truncated forward that stops at layer L. For
transcoders, the same two at layer L's MLP (the `mlp` submodule of the decoder layer): `mlp_splice`
replaces the MLP's output by a function of its input, `mlp_io_at` reads the (input, output) rows.

`splice` is the one splice of every CE, LoRA objective and eval: a function marked
`splice_site = "mlp"` (`lorasae.sae.splice.splice_fn` of a transcoder) is called as `fn(mlp_input,
mlp_output)` at layer L's MLP and its result replaces the MLP output; any other function replaces the
residual after layer L."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from lorasae.model.load import check_layer, decoder_layers

SpliceFn = Callable[[torch.Tensor], torch.Tensor]


def _replace_hidden(output, fn: SpliceFn):
    # transformers 5 decoder layers return a tensor; older ones and GPT-2 style blocks return a tuple
    if isinstance(output, torch.Tensor):
        return fn(output)
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    raise TypeError(f"Unexpected decoder layer output type {type(output).__name__}")


RESID, MLP = "resid", "mlp"


def splice_site_of(fn: object) -> str:
    """Where `fn` splices: its `splice_site` attribute (`"mlp"` for a transcoder's), else `"resid"`."""
    site = getattr(fn, "splice_site", RESID)
    if site not in (RESID, MLP):
        raise ValueError(f"lorasae.model.hooks: unknown splice_site {site!r}; use {RESID!r} or {MLP!r}.")
    return site


@contextmanager
def splice(model: nn.Module, fns: Mapping[int, SpliceFn]) -> Iterator[None]:
    """Within the block, for each layer L in `fns`: the output hidden state of decoder layer L is replaced
    by `fns[L](h)`, or, for a function whose `splice_site` is `"mlp"`, layer L's MLP output by
    `fns[L](mlp_input, mlp_output)`."""
    layers = decoder_layers(model)
    with ExitStack() as stack:
        for layer, fn in fns.items():
            check_layer(model, layer)
            if splice_site_of(fn) == MLP:

                def on_mlp(_module, args, output, fn=fn):
                    return fn(args[0], output)

                stack.callback(mlp_of(model, layer).register_forward_hook(on_mlp).remove)
                continue

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


MLP_ATTR = "mlp"
"""The MLP submodule of a decoder layer (Llama, Qwen, Gemma, Mistral and GPT-2 blocks all call it `mlp`)."""


def mlp_of(model: nn.Module, layer: int) -> nn.Module:
    """Decoder layer `layer`'s MLP module, with a one-line error when the layer has none."""
    check_layer(model, layer)
    block = decoder_layers(model)[layer]
    mlp = getattr(block, MLP_ATTR, None)
    if not isinstance(mlp, nn.Module):
        raise TypeError(
            f"lorasae.model.hooks: decoder layer {layer} ({type(block).__name__}) has no `{MLP_ATTR}` submodule; "
            "a transcoder needs a model whose blocks call their MLP `mlp`."
        )
    return mlp


@contextmanager
def mlp_splice(model: nn.Module, fns: Mapping[int, SpliceFn]) -> Iterator[None]:
    """Within the block, the output of layer L's MLP is replaced by `fns[L](mlp_input)` (a transcoder's
    `reconstruct`); everything around the MLP (its norms, the residual add) runs as before. (`splice`
    with each function marked `splice_site = "mlp"`.)"""

    def on_mlp(fn: SpliceFn) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        def replace(mlp_input: torch.Tensor, _mlp_output: torch.Tensor) -> torch.Tensor:
            return fn(mlp_input)

        replace.splice_site = MLP  # type: ignore[attr-defined]
        return replace

    with splice(model, {layer: on_mlp(fn) for layer, fn in fns.items()}):
        yield


def mlp_io_at(
    model: nn.Module,
    input_ids: torch.Tensor,
    layer: int,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of layer `layer`'s MLP, each [B, T, d]: a transcoder's training rows. The forward
    stops right after that MLP."""
    mlp = mlp_of(model, layer)

    def stop(_module, args, output):
        raise _StopAtMlp(args[0], output)

    handle = mlp.register_forward_hook(stop)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopAtMlp as stopped:
        return stopped.rows
    finally:
        handle.remove()
    raise RuntimeError("the forward pass finished without reaching the hooked MLP")


class _StopAtMlp(Exception):
    def __init__(self, mlp_in: torch.Tensor, mlp_out: torch.Tensor):
        self.rows = (mlp_in, mlp_out)
