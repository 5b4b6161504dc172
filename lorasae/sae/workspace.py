"""A reusable scratch buffer for the dense [tokens, latents] pre-activations on the CPU.

A fresh 128 MB tensor per training step costs one page fault per 4 KiB page on first touch (glibc hands
large blocks back to the OS on free), about 12% of the encoder GEMM at d=512, m=8192, 4096 tokens. The SAE
step allocates the same shape every step, so one buffer per thread is kept and handed out again. Only
kernels that never let the buffer escape (not returned, not saved for backward) may use it.
CUDA has a caching allocator already: there the buffer is a plain new tensor.
"""

from __future__ import annotations

import threading

import torch

__all__ = ["scratch", "release_scratch"]

_local = threading.local()


def scratch(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor of ``shape``; on the CPU the same storage as the previous call when it fits.

    The caller owns it until its next call on this thread: never return it or save it for backward.
    """
    if device.type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    numel = 1
    for size in shape:
        numel *= size
    buf: torch.Tensor | None = getattr(_local, "buf", None)
    if buf is None or buf.dtype != dtype or buf.numel() < numel:
        _local.buf = None  # free the old one before allocating the new one
        buf = torch.empty(numel, dtype=dtype)
        _local.buf = buf
    return buf[:numel].view(shape)


def release_scratch() -> None:
    """Drop this thread's buffer (frees its memory)."""
    _local.buf = None
