"""Reuse of the clean prefix of a spliced forward: the residual after decoder layer L of fixed validation
chunks is computed once, and each later evaluation runs only layers L+1… and the head.

Splicing an SAE after layer L changes nothing before it, so layers 0…L of every point of the SAE
training curve (101 spliced forwards over the same chunks) compute the same residual each time. Caching
it saves (L+1)/n_layers of the layer compute of every point, exactly: the later layers receive the very
tensor the full forward would give them.

How: within `PrefixCache.active()`, decoder layers 0…L of the model are replaced by stubs (identity
below L, "return the cached residual of this batch" at L) and the model's own `forward` runs as usual,
so it still builds its masks (Gemma-2's sliding-window / global ones), positions and rotary tables, the
embedding (cheap: a lookup), the final norm, the head and its soft-capping; `lorasae.model.hooks.splice` hooks
the stub at L like the real layer, and `lorasae.model.ce.ce_sum_and_count` computes the CE unchanged. The
batch is identified by the input ids reaching the embedding (checked equal to the cached chunks).

A transcoder at layer L (`splice_site == "mlp"`) replaces the MLP output *inside* layer L, so its
spliced forward shares only layers 0…L-1 with the clean one: `reusable_prefix_layer` gives the layer to
cache after (L, or L-1 for a transcoder; None at layer 0), and `PrefixCache.ce_sum_and_count` refuses a
splice that would change a cached layer.

Used only for the architectures whose decoder loop is known to be plain (`SUPPORTED_MODEL_TYPES`), after
checking once that one batch's logits equal the full forward's; anything else, a masked LM, or a cache
above `max_bytes` falls back to the full forward (`build_prefix_cache` returns None and says why)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from lorasae.model.ce import SpliceFns, ce_sum_and_count
from lorasae.model.hooks import MLP, residual_at, splice_site_of
from lorasae.model.load import check_layer, d_model, decoder_layers, is_masked_lm, unwrap

# decoder loops that call every layer in order on the previous layer's output with masks/positions built
# before the loop (transformers 5 modeling code of these model types)
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "gemma", "gemma2", "qwen2", "qwen3"})
DEFAULT_MAX_GIB = 1.0
_VERIFY_TOLERANCE = 1e-4  # logits of the check batch: the same kernels on the same inputs, so ~bitwise


class _Identity(nn.Module):
    """Stands in for a decoder layer below L: its output is never used (layer L's stub ignores it)."""

    def __init__(self, as_tuple: bool):
        super().__init__()
        self.as_tuple = as_tuple

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return (hidden_states,) if self.as_tuple else hidden_states


class _Cached(nn.Module):
    """Stands in for decoder layer L: returns the cached residual of the batch being evaluated."""

    def __init__(self, cache: PrefixCache, as_tuple: bool):
        super().__init__()
        self.cache, self.as_tuple = cache, as_tuple

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        out = self.cache.current()
        if out.shape != hidden_states.shape:
            raise RuntimeError(
                f"prefix cache: residual {tuple(out.shape)} for a hidden state {tuple(hidden_states.shape)}"
            )
        return (out,) if self.as_tuple else out


@dataclass
class PrefixCache:
    """The residual after `layer` of `chunks` [N, T] (`residual` [N, T, d] on the model's device)."""

    model: nn.Module
    layer: int
    chunks: torch.Tensor
    residual: torch.Tensor
    as_tuple: bool = False  # the decoder layers return tuples (older transformers)
    _start: int | None = None
    _rows: int = 0

    @property
    def nbytes(self) -> int:
        return self.residual.numel() * self.residual.element_size()

    def current(self) -> torch.Tensor:
        if self._start is None:
            raise RuntimeError("prefix cache: the model ran without its input ids reaching the embedding")
        # a copy, so nothing downstream can modify the cache in place
        return self.residual[self._start : self._start + self._rows].clone()

    def _locate(self, input_ids: torch.Tensor) -> None:
        """Find the cached rows equal to `input_ids` [B, T]: next after the last batch, else anywhere."""
        rows = input_ids.shape[0]
        after = 0 if self._start is None else self._start + self._rows
        for start in dict.fromkeys([after, *range(0, len(self.chunks) - rows + 1)]):
            part = self.chunks[start : start + rows]
            if part.shape == input_ids.shape and torch.equal(part, input_ids.to(part.device)):
                self._start, self._rows = start, rows
                return
        raise RuntimeError("prefix cache: these input ids are not among the cached validation chunks")

    @contextmanager
    def active(self) -> Iterator[None]:
        """Within the block, the model's forward on (a batch of) the cached chunks runs only the layers
        after `layer`; decoder layers 0…layer are stubs, restored on exit."""
        layers = decoder_layers(self.model)
        originals = [layers[i] for i in range(self.layer + 1)]

        def locate(_module, args, kwargs):
            ids = args[0] if args else kwargs.get("input")
            self._locate(ids)

        handle = unwrap(self.model).get_input_embeddings().register_forward_pre_hook(locate, with_kwargs=True)
        try:
            for i in range(self.layer):
                layers[i] = _Identity(self.as_tuple)
            layers[self.layer] = _Cached(self, self.as_tuple)
            yield
        finally:
            handle.remove()
            for i, module in enumerate(originals):
                layers[i] = module
            self._start = None

    def ce_sum_and_count(
        self, batch_size: int, splice_fns: SpliceFns | None = None, scored_position: int | None = None
    ) -> tuple[float, int]:
        """`eval_ce.ce_sum_and_count` of the cached chunks with `splice_fns` (layers ≥ `layer` only),
        running only the layers after `layer`."""
        for layer, fn in _splices(splice_fns, self.chunks[:1]).items():
            last = reusable_prefix_layer(layer, splice_site_of(fn))
            if last is None or last < self.layer:
                raise ValueError(
                    f"prefix cache after layer {self.layer}: cannot splice an earlier layer (the "
                    f"{splice_site_of(fn)} splice at layer {layer} changes layer {self.layer} or before; "
                    "cache after prefix.reusable_prefix_layer of it)."
                )
        with self.active():
            return ce_sum_and_count(self.model, self.chunks, batch_size, splice_fns, scored_position)


def _splices(splice_fns: SpliceFns | None, ids: torch.Tensor) -> dict:
    if splice_fns is None:
        return {}
    return dict(splice_fns(ids) if callable(splice_fns) else splice_fns)


def reusable_prefix_layer(splice_layer: int, site: str = "resid") -> int | None:
    """The last decoder layer whose output a splice at `splice_layer` leaves unchanged and a prefix cache
    may hold: the layer itself for a residual splice (it changes what comes after), the layer before for
    an MLP splice (a transcoder changes layer L itself); None when nothing can be reused."""
    last = splice_layer - 1 if site == MLP else splice_layer
    return last if last >= 0 else None


def unsupported_reason(model: nn.Module) -> str | None:
    """Why the prefix cannot be reused for `model` (None: it can)."""
    if is_masked_lm(model):
        return "a masked LM (its evaluation masks the input ids)"
    model_type = getattr(getattr(unwrap(model), "config", None), "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"architecture {model_type!r} is not one whose decoder loop is known to be plain"
    return None


def cache_bytes(model: nn.Module, chunks: torch.Tensor) -> int:
    """Bytes of the residual of `chunks` [N, T] in the model's dtype."""
    param = next(model.parameters())
    return chunks.numel() * d_model(model) * param.element_size()


@torch.no_grad()
def build_prefix_cache(
    model: nn.Module,
    chunks: torch.Tensor,
    layer: int,
    batch_size: int,
    max_bytes: int = int(DEFAULT_MAX_GIB * 2**30),
) -> tuple[PrefixCache | None, str]:
    """(the cache, a one-line note) — (None, why not) when the full forward must be used instead: an
    unsupported model, a cache above `max_bytes`, or a first batch whose logits differ from the full
    forward's."""
    check_layer(model, layer)
    reason = unsupported_reason(model)
    need = cache_bytes(model, chunks)
    if reason is None and max_bytes <= 0:
        reason = "the prefix cache is off: a cap of 0 bytes"
    if reason is None and need > max_bytes:
        reason = f"the cache would take {need / 2**30:.2f} GiB, above the cap of {max_bytes / 2**30:.2f} GiB"
    if reason is None and len(chunks) == 0:
        reason = "no validation chunks on this rank"
    if reason is not None:
        return None, f"validation: full forward for every curve point ({reason})"
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        chunks = chunks.to(device)
        tuples: list[bool] = []  # what layer L returns: the stubs return the same

        def record(_module, _args, output):
            tuples.append(not isinstance(output, torch.Tensor))

        handle = decoder_layers(model)[layer].register_forward_hook(record)
        try:
            residual = torch.cat([residual_at(model, ids, layer) for ids in chunks.split(batch_size)])
        finally:
            handle.remove()
        as_tuple = tuples[0]
        cache = PrefixCache(model, layer, chunks, residual, as_tuple)
        first = chunks[:batch_size]
        full = model(input_ids=first, use_cache=False).logits
        with cache.active():
            reused = model(input_ids=first, use_cache=False).logits
    finally:
        model.train(was_training)
    if not torch.allclose(full.float(), reused.float(), rtol=_VERIFY_TOLERANCE, atol=_VERIFY_TOLERANCE):
        diff = float((full.float() - reused.float()).abs().max())
        return None, f"validation: full forward for every curve point (prefix reuse differs by {diff:.2e})"
    return cache, (
        f"validation: layers 0-{layer} cached once for {chunks.numel():,} tokens ({cache.nbytes / 2**20:.1f} MiB); "
        f"each curve point runs layers {layer + 1}+ only"
    )
