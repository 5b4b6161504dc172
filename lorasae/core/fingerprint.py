"""Fingerprints: what made an output (SAE weights, model, data, settings), as a short hash recorded with
it, so that a rerun with other inputs is noticed instead of silently overwriting or mixing results.

`fingerprint(model=..., data=..., settings=..., sae_weights=[...])` hashes a JSON of its parts;
`weights_digest(folder)` hashes an SAE folder's weights file (None for sources with no local file, e.g. a
sae-lens release not downloaded: their name is part of the settings instead).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DIGEST_CHARS = 16
WEIGHT_FILES = ("sae_weights.safetensors", "sae.safetensors", "params.npz")  # ours/SAELens, sparsify, npz


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes (first DIGEST_CHARS hex digits), read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            h.update(block)
    return h.hexdigest()[:DIGEST_CHARS]


def weights_digest(source: str | Path) -> str | None:
    """The digest of an SAE's weights file (`source` a folder or the file); None when there is none."""
    path = Path(source)
    if path.is_file():
        return file_digest(path)
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return file_digest(path / name)
    return None


def fingerprint(
    model: str,
    data: str | None,
    settings: Mapping[str, Any],
    sae_weights: Sequence[str | None] = (),
) -> str:
    """One hash of everything that decides an output's numbers."""
    parts = {"model": model, "data": data, "settings": dict(settings), "sae_weights": list(sae_weights)}
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def differing(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ between two settings records (for messages naming what changed)."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
