"""One floating-point path on every x86 CPU, for runs whose numbers must reproduce across machines (`make
grok`). torch picks its vector kernels by the CPU's ISA (AVX-512 on one machine, AVX2 on another) and MKL
picks its BLAS code path by CPU model and vendor; both change the order of float operations, and the
grokking study amplifies a last-bit difference into other latents and other accuracies. `pin()` fixes
both before torch is imported: aten's AVX2 kernels (every x86 CPU since 2013-2015 has them) and MKL's
conditional numerical reproducibility in its COMPATIBLE mode (the same results on Intel and other CPUs).
This module imports nothing heavy: call `pin()` before anything imports torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

PINNED: dict[str, str] = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}
OPT_OUT = "LORASAE_CPU_NUMERICS"
"""Set to `native` to keep the CPU's own fastest paths (numbers then match only on the same CPU)."""


def pin(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set `PINNED` in `environ` (default: this process's, before torch loads) unless `OPT_OUT` is
    `native`; return what the settings are now. RuntimeError when torch is already imported (too late)."""
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "").lower() == "native":
        return {key: env.get(key, "") for key in PINNED}
    if environ is None and "torch" in sys.modules:
        raise RuntimeError("cpu_numerics.pin() must run before torch is imported")
    env.update(PINNED)
    return dict(PINNED)


def current() -> dict[str, str]:
    """The float path of this process, for a run's record: aten's kernels, MKL's mode, torch threads."""
    import torch

    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
        "threads": str(torch.get_num_threads()),
    }


def is_pinned(path: dict[str, str]) -> bool:
    """Whether a `current()` float path is the pinned one."""
    return (
        path.get("cpu_capability") == PINNED["ATEN_CPU_CAPABILITY"].upper()
        and path.get("mkl_cbwr") == PINNED["MKL_CBWR"]
    )
