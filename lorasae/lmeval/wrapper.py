"""lm-eval-harness's `HFLM` around an in-memory model (base or with an unmerged LoRA adapter), with SAEs
optionally spliced into the residual stream through `lorasae.model.hooks.splice`.

The splice function of an SAE needs the token ids of the forward pass it runs in (Gemma Scope SAEs leave
BOS/EOS/PAD positions alone). The hook on the decoder layer only sees hidden states, so a forward
pre-hook on the input embedding records the ids of every forward pass — lm-eval's scoring calls and
each step of generation alike — and the layer hook builds `splice_fn(sae, ids, special_ids)` from them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from lorasae.model.hooks import splice
from lorasae.model.load import special_token_ids, unwrap
from lorasae.sae.capabilities import sae_splice_site

SpliceBuilder = Callable[[Any, torch.Tensor, Sequence[int]], Callable[[torch.Tensor], torch.Tensor]]


class InputIdsRecorder:
    """Remembers the `input_ids` of the forward pass in flight (a pre-hook on the input embedding)."""

    def __init__(self, model: nn.Module):
        embedding = unwrap(model).get_input_embeddings()
        if embedding is None:
            raise TypeError(f"{type(unwrap(model)).__name__} has no input embedding to read token ids from.")
        self.ids: torch.Tensor | None = None
        self._handle = embedding.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, _module: nn.Module, args: tuple, kwargs: dict) -> None:
        ids = args[0] if args else kwargs.get("input", kwargs.get("input_ids"))
        self.ids = ids if isinstance(ids, torch.Tensor) else None

    def ids_for(self, hidden: torch.Tensor) -> torch.Tensor:
        """The recorded ids, checked against the hidden state `[B, T, d]` they must describe."""
        if self.ids is None or tuple(self.ids.shape) != tuple(hidden.shape[:2]):
            shape = None if self.ids is None else tuple(self.ids.shape)
            raise RuntimeError(
                f"The SAE splice needs the token ids of this forward pass (hidden states "
                f"{tuple(hidden.shape[:2])}, recorded ids {shape}): call the model with input_ids, "
                "not inputs_embeds."
            )
        return self.ids

    def remove(self) -> None:
        self._handle.remove()
        self.ids = None


def _default_splice_builder() -> SpliceBuilder:
    from lorasae.sae import splice_fn

    return splice_fn


@contextmanager
def sae_spliced(
    model: nn.Module,
    saes: Mapping[int, Any],
    special_ids: Sequence[int],
    splice_builder: SpliceBuilder | None = None,
) -> Iterator[None]:
    """Within the block, every forward pass of `model` has `saes[L]` spliced after decoder layer L (a
    transcoder: in place of layer L's MLP output).

    `splice_builder(sae, input_ids, special_ids)` (default `lorasae.sae.splice_fn`) builds the function
    that replaces the hidden state; it decides what happens at special-token positions (Gemma Scope:
    the original activation is kept)."""
    if not saes:
        yield
        return
    build = splice_builder or _default_splice_builder()
    special = list(special_ids)
    recorder = InputIdsRecorder(model)

    def layer_fn(layer: int, sae: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        # a transcoder's function gets (mlp_input, mlp_output) from `hooks.splice` (its splice_site)
        def fn(hidden: torch.Tensor, *original: torch.Tensor) -> torch.Tensor:
            out = build(sae, recorder.ids_for(hidden), special)(hidden, *original)
            # lm-eval would silently score NaN log-likelihoods (argmax picks the first choice)
            if not bool(torch.isfinite(out).all()):
                raise FloatingPointError(
                    f"The SAE spliced at layer {layer} returned non-finite values: check its weights."
                )
            return out

        fn.splice_site = sae_splice_site(sae)  # type: ignore[attr-defined]
        return fn

    try:
        with splice(model, {layer: layer_fn(layer, sae) for layer, sae in saes.items()}):
            yield
    finally:
        recorder.remove()


def make_hflm(
    model: nn.Module,
    tokenizer: Any,
    batch_size: int | str = 1,
    max_length: int | None = None,
    max_batch_size: int = 64,
):
    """`lm_eval.models.huggingface.HFLM` around an already loaded model (a transformers model or a
    PeftModel); the model stays on its device and in its dtype."""
    from lm_eval.models.huggingface import HFLM

    model.eval()
    return HFLM(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=batch_size,
        max_batch_size=max_batch_size,
        max_length=max_length,
        device=str(next(model.parameters()).device),
    )


@contextmanager
def benchmark_lm(
    model: nn.Module,
    tokenizer: Any,
    saes: Mapping[int, Any] | None = None,
    batch_size: int | str = 1,
    max_length: int | None = None,
    splice_builder: SpliceBuilder | None = None,
) -> Iterator[Any]:
    """Yield an HFLM for `model` (pass a PeftModel for the LoRA model: the adapter stays unmerged), with
    `saes` ({layer: SAE}) spliced in for as long as the block runs."""
    with ExitStack() as stack:
        if saes:
            stack.enter_context(sae_spliced(model, saes, special_token_ids(tokenizer), splice_builder))
        yield make_hflm(model, tokenizer, batch_size=batch_size, max_length=max_length)
