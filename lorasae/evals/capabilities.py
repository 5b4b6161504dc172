"""The registry's eval suites as consumers of a dictionary (`lorasae.sae.capabilities`): what each takes
(its `EvalSuite.dictionaries`), the name a refusal gives it, and the one check by suite name."""

from __future__ import annotations

from lorasae.evals.registry import suite as registry_suite
from lorasae.evals.registry import suites
from lorasae.sae.capabilities import (
    ANY,
    ENCODING,
    RESIDUAL,
    TRAIN_LORA,
    Consumer,
    check_consumer,
    refusal_reason,
)

OUTSIDE_REGISTRY = {TRAIN_LORA.name: TRAIN_LORA}
"""Consumers of a dictionary that are not eval suites."""


def suite_names() -> tuple[str, ...]:
    """Every consumer :func:`check_suite` knows: the registry's suites and ``train_lora``."""
    return (*OUTSIDE_REGISTRY, *(s.name for s in suites()))


def consumer(suite: str) -> Consumer:
    """`suite` (a registry suite's name, or ``train_lora``) as a consumer: its refusal name and what it takes."""
    if suite in OUTSIDE_REGISTRY:
        return OUTSIDE_REGISTRY[suite]
    try:
        entry = registry_suite(suite)
    except LookupError:
        raise ValueError(
            f"lorasae.evals.capabilities: unknown suite {suite!r}; use one of {', '.join(suite_names())}."
        ) from None
    if entry.dictionaries not in (ANY, ENCODING, RESIDUAL):
        raise ValueError(
            f"suite {suite!r}: dictionaries={entry.dictionaries!r} is not {ANY!r}, {ENCODING!r} or "
            f"{RESIDUAL!r}; fix its suite.py."
        )
    name = f"SAE-Bench {suite}" if entry.family == "saebench" else suite
    return Consumer(name, entry.dictionaries)


def takes(suite: str) -> str:
    """What `suite` takes: ``"any"``, ``"encoding"`` or ``"residual"``."""
    return consumer(suite).takes


def unsupported_reason(suite: str, sae: object) -> str | None:
    """Why `suite` cannot take `sae` (None: it can)."""
    return refusal_reason(consumer(suite), sae)


def check_suite(suite: str, sae: object, source: str | None = None) -> None:
    """One line naming the suite, the architecture and why, unless `suite` can evaluate `sae`."""
    check_consumer(consumer(suite), sae, source)


__all__ = ["OUTSIDE_REGISTRY", "check_suite", "consumer", "suite_names", "takes", "unsupported_reason"]
