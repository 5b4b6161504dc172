"""Layer specs as the command line and results.csv write them: `12`, `1,4`, `3-5`, `1,3-5`."""

from __future__ import annotations

import re
from collections.abc import Sequence


def parse_layer_spec(spec: str | int | Sequence[int]) -> list[int]:
    """`"3"`, `"1,4"`, `"3-5"` (inclusive), `"1,3-5"`, `3` or `[1, 4]` → sorted unique layer indices."""
    if isinstance(spec, int):
        return [spec]
    if not isinstance(spec, str):
        return sorted({int(x) for x in spec})
    layers: set[int] = set()
    for part in re.split(r"[,\s]+", spec.strip().strip("[]")):
        if not part:
            continue
        if m := re.fullmatch(r"(\d+)\s*-\s*(\d+)", part):
            a, b = int(m.group(1)), int(m.group(2))
            if a > b:
                raise ValueError(f"Layer range {part!r} is empty: write the smaller index first ({b}-{a}).")
            layers.update(range(a, b + 1))
        elif re.fullmatch(r"-?\d+", part):
            layers.add(int(part))
        else:
            raise ValueError(
                f"Cannot parse layer spec {spec!r}: use a layer index (12), a list (1,4) or a range (3-5)."
            )
    if not layers:
        raise ValueError(f"Layer spec {spec!r} names no layers.")
    return sorted(layers)


def format_layers(layers: Sequence[int]) -> str:
    """Compact layer spec for tables and results.csv: `[0,1,2,3,5]` → `0-3,5`; `[1]` → `1`."""
    layers = sorted(set(layers))
    parts: list[str] = []
    start = prev = None
    for layer in [*layers, None]:
        if start is not None and (layer is None or layer != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if layer is not None and start is None:
            start = layer
        prev = layer
    return ",".join(parts)
