"""Outputs of a frozen model by batch, computed once per process.

Two computations of the demo repeat exactly: every LoRA step compares the adapted, SAE-spliced model with
the original model on the same batch (the KL target), and the runs of a sweep share the model and the
data order (`seed_everything` before each run), so every run after the first recomputed the same targets
(a no-grad forward of the whole model, about a sixth of a step on the built-in model); and every SAE
trained at one layer on one model harvests the same residuals of the same training chunks (a truncated
forward per step, about a third of a built-in SAE's step). `ForwardCache` keeps such outputs, keyed by a
digest of the original model's weights (LoRA adapters excluded), a tag naming the computation (the KL
implementation, the layer) and the batch's token ids, so a changed model, computation or batch is never
served a stored value; a stored value is handed out as a copy, so no caller can alter it. Only small
models on the CPU use it (weights under `max_bytes`: the digest reads every weight; on a GPU these
forwards cost little), and it holds at most `max_bytes` of outputs (later ones are computed and not
kept).

A cached forward costs no time, so a run served from the store records a shorter training time than it
would alone: the process's store (`shared_forward_cache`) is therefore off except inside
`reused_forwards()`, which the sweep and the demo's sweep SAEs use (runs whose times no figure or claim
reads); the timed runs (the main TopK and e2e SAEs, the LoRA runs from checkpoints, the dictionaries
compared) compute every forward themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

Lookup = Callable[[str, Tensor, Callable[[], Tensor]], Tensor]
"""`lookup(tag, input_ids, compute)`: the stored output of computation `tag` on the batch, else
`compute()` (kept while the store has room)."""

DEFAULT_MAX_BYTES = 512 << 20
"""Largest model (weights) and largest store (bytes) served: on the built-in model the KL targets of 160
training sequences take 10 MiB, the residuals of a 200k-token SAE run 100 MiB per layer."""


def base_weights_digest(model: nn.Module) -> str:
    """SHA-256 over the model's class and config and the names, dtypes, shapes and values of every
    parameter and buffer of `model` that is not a LoRA adapter's (names containing `lora_`): the original
    model inside a PeftModel."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)  # a PeftModel passes its base model's
    h.update(
        f"{type(model).__name__}|{config.to_json_string() if hasattr(config, 'to_json_string') else config}|".encode()
    )
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        if "lora_" in name:
            continue
        data = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return h.hexdigest()


def _weights_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for name, t in model.named_parameters() if "lora_" not in name)


def batch_digest(input_ids: Tensor) -> str:
    data = input_ids.detach().to("cpu").contiguous()
    return hashlib.sha256(f"{data.dtype}|{tuple(data.shape)}|".encode() + data.numpy().tobytes()).hexdigest()


class ForwardCache:
    """Outputs by (original model's weights digest, tag, batch). `for_model` gives the lookup of one
    model, or None when the model is not on the CPU or too large to be digested cheaply."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, enabled: bool = True):
        self.max_bytes, self.enabled = max_bytes, enabled
        self._store: dict[tuple[str, str, str], Tensor] = {}
        self.bytes = self.hits = self.misses = 0

    def for_model(self, model: nn.Module) -> Lookup | None:
        """`lookup(tag, input_ids, compute)` for the original model inside `model` as it is now (its
        weights are digested here: the original model must not change while the lookup is used)."""
        first = next(model.parameters(), None)
        if (
            not self.enabled
            or first is None
            or first.device.type != "cpu"
            or _weights_bytes(model) > self.max_bytes
        ):
            return None  # a GPU recomputes faster than the digest and the store cost
        model_digest = base_weights_digest(model)

        def lookup(tag: str, input_ids: Tensor, compute: Callable[[], Tensor]) -> Tensor:
            key = (model_digest, tag, batch_digest(input_ids))
            found = self._store.get(key)
            if found is not None:
                self.hits += 1
                return found.clone()
            self.misses += 1
            value = compute()
            size = value.numel() * value.element_size()
            if self.bytes + size <= self.max_bytes:
                self._store[key] = value.detach().clone()
                self.bytes += size
            return value

        return lookup

    def clear(self) -> None:
        """Forget every stored output (tests start from an empty store)."""
        self._store.clear()
        self.bytes = self.hits = self.misses = 0


_SHARED = ForwardCache(enabled=False)


def shared_forward_cache() -> ForwardCache:
    """The process's store: every LoRA session and SAE run of a process (the demo's stages one after
    another, a sweep shard's runs) shares it; its keys tell models, computations and batches apart."""
    return _SHARED


@contextmanager
def reused_forwards() -> Iterator[ForwardCache]:
    """Within the block, the runs of this process share the process's store; at its end the store is
    emptied and off again, so a later run's recorded time is what it costs alone (a nested block leaves
    the outer one's store as it was)."""
    outer = _SHARED.enabled
    _SHARED.enabled = True
    try:
        yield _SHARED
    finally:
        _SHARED.enabled = outer
        if not outer:
            _SHARED.clear()
