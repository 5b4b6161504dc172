"""`require(module)`: import a library an interop test compares against, or fail the test with the fix.

The cross-checks (SAEBench, SAELens, sparsify, the notebook runner) are what hold lorasae to the originals,
so a missing library must not turn them into skips: `make setup` installs every one of them
(requirements.txt, requirements-bench.txt, requirements-crosscheck.txt)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """`module` imported; if it cannot be, the calling test (or its whole file, at import time) fails."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        pytest.fail(
            f"tests: cannot import {module} ({err}); run `make setup`, which installs the cross-check "
            "libraries (requirements.txt, requirements-bench.txt, requirements-crosscheck.txt)",
            pytrace=False,
        )
