"""What describes an SAE without its weights: ``SaeConfig`` (shape and provenance, SAELens's cfg.json
fields), the dtype names it stores, and the layer a TransformerLens / Hugging Face hook name reads.

A leaf of ``lorasae.sae``: ``topk.py`` (the model), ``io.py`` (the on-disk format) and ``sources.py``
(loading any SAE) all import it, and it imports none of them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch  # noqa: F401  (type annotations)

from lorasae.core.runtime import dtype_name, parse_dtype

# the one dtype table is `lorasae.core.runtime`'s; these are its names under the SAE package's old spellings
to_torch_dtype = parse_dtype


@dataclass
class SaeConfig:
    """Shape and provenance of a TopK SAE (what goes into SAELens's cfg.json)."""

    d_in: int
    """Width of the activations the SAE reads (the model's d_model)."""
    d_sae: int
    """Number of latents m (d_in x expansion factor)."""
    k: int
    """Active latents per token."""
    model_name: str | None = None
    """Model whose activations the SAE was trained on."""
    hook_layer: int | None = None
    """Decoder layer L whose output the SAE reads (None if unknown)."""
    hook_name: str | None = None
    """TransformerLens hook name; defaults to ``blocks.{hook_layer}.hook_resid_post``."""
    dtype: str = "float32"
    """Parameter dtype name."""
    skip_special_tokens: bool = False
    """When spliced, positions holding special tokens (BOS/EOS) keep the original activation."""

    def __post_init__(self) -> None:
        if min(self.d_in, self.d_sae, self.k) < 1:
            raise ValueError(
                f"SaeConfig needs positive d_in, d_sae, k (got {self.d_in}, {self.d_sae}, {self.k})"
            )
        if self.k > self.d_sae:
            raise ValueError(f"k={self.k} exceeds the number of latents d_sae={self.d_sae}")
        if self.hook_name is None and self.hook_layer is not None:
            self.hook_name = f"blocks.{self.hook_layer}.hook_resid_post"
        self.dtype = dtype_name(to_torch_dtype(self.dtype))

    @classmethod
    def from_expansion(cls, d_in: int, expansion_factor: int, k: int, **kwargs: Any) -> SaeConfig:
        return cls(d_in=d_in, d_sae=d_in * expansion_factor, k=k, **kwargs)

    @property
    def expansion_factor(self) -> float:
        return self.d_sae / self.d_in

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SaeConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{key: val for key, val in d.items() if key in names})


_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")
_HF_LAYER = re.compile(r"(?:^|\.)layers?[._](\d+)$")


def layer_from_hook_name(name: str) -> int | None:
    """Decoder layer whose output a hook reads: ``blocks.L.hook_resid_post`` -> L,
    ``blocks.L.hook_resid_pre`` -> L-1, ``model.layers.L`` / ``layers.L`` -> L; else None."""
    m = _HOOK.match(name)
    if m:
        layer = int(m.group(1))
        return layer if m.group(2) == "post" else (layer - 1 if layer > 0 else None)
    m = _HF_LAYER.search(name)
    return int(m.group(1)) if m else None
