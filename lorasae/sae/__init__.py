"""TopK sparse autoencoders: model, fast kernels, SAELens-format I/O, loading any SAE, splicing."""

from lorasae.sae.config import SaeConfig
from lorasae.sae.geometric_median import geometric_median
from lorasae.sae.io import SaeFormatError
from lorasae.sae.sources import (
    SaeLensAdapter,
    SaeLike,
    SaeNotFoundError,
    SaeShapeError,
    check_sae_fits,
    load_sae,
    sae_hook_layer,
)
from lorasae.sae.splice import splice_fn
from lorasae.sae.topk import SaeOutput, TopKSAE, load_topk_sae, save_sae

__all__ = [
    "SaeConfig",
    "SaeFormatError",
    "SaeLensAdapter",
    "SaeLike",
    "SaeNotFoundError",
    "SaeOutput",
    "SaeShapeError",
    "TopKSAE",
    "check_sae_fits",
    "geometric_median",
    "load_sae",
    "load_topk_sae",
    "sae_hook_layer",
    "save_sae",
    "splice_fn",
]
