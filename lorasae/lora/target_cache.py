"""The KL targets of LoRA training, computed once per session and batch.

Every LoRA step compares the adapted, SAE-spliced model with the original model on the same batch; the
original model's output (its final hidden states, or logits) does not depend on the run. The runs of a
sweep share the model and the data order (`seed_everything` before each run), so every run after the
first recomputed the same targets: a no-grad forward of the whole model, about a sixth of a step on the
built-in model. `TargetCache` keeps them, keyed by a digest of the original model's weights (adapters
excluded), the KL implementation and the batch's token ids, so a changed model or batch can never be
served a stale target. Only small models use it (weights and all targets under `max_bytes` each): the
digest reads every weight, and the targets of a run are held in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

Lookup = Callable[[str, Tensor, Callable[[], Tensor]], Tensor]
"""`lookup(impl, input_ids, compute)`: the cached target of the batch, else `compute()` (kept)."""

DEFAULT_MAX_BYTES = 256 << 20
"""Largest model (weights) and largest target store (bytes) the cache serves: the built-in models' 160
training sequences of 128 positions take 10 MiB of fp32 hidden states."""


def base_weights_digest(model: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and values of every parameter and buffer of `model` that is
    not a LoRA adapter's (names containing `lora_`): the original model inside a PeftModel."""
    h = hashlib.sha256()
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


class TargetCache:
    """KL targets by (original model's weights digest, KL implementation, batch). `for_model` gives the
    lookup of one run's model, or None when the model is too large to be digested cheaply."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._store: dict[tuple[str, str, str], Tensor] = {}
        self.bytes = self.hits = self.misses = 0

    def for_model(self, model: nn.Module) -> Lookup | None:
        """`lookup(impl, input_ids, compute)` for the original model inside `model` as it is now (its
        weights are digested here: the original model must not change while the lookup is used)."""
        if _weights_bytes(model) > self.max_bytes:
            return None
        model_digest = base_weights_digest(model)

        def lookup(impl: str, input_ids: Tensor, compute: Callable[[], Tensor]) -> Tensor:
            key = (model_digest, impl, batch_digest(input_ids))
            found = self._store.get(key)
            if found is not None:
                self.hits += 1
                return found
            self.misses += 1
            value = compute()
            size = value.numel() * value.element_size()
            if self.bytes + size <= self.max_bytes:
                self._store[key] = value.detach()
                self.bytes += size
            return value

        return lookup


_SHARED = TargetCache()


def shared_target_cache() -> TargetCache:
    """The process's store: every LoRA session of a process (the demo's stages one after another, a
    sweep shard's runs) shares it; its keys tell models and batches apart."""
    return _SHARED
