"""TopK sparse autoencoders: model, fast kernels, SAELens-format I/O, loading any SAE, splicing."""

from lorasae.sae.geometric_median import geometric_median
from lorasae.sae.topk import SaeConfig, SaeOutput, TopKSAE

__all__ = ["SaeConfig", "SaeOutput", "TopKSAE", "geometric_median"]
