"""Every dictionary architecture built with small random weights for a given layer and width (the tests
of LoRA on each architecture and of which suites take each)."""

from __future__ import annotations

import torch
from torch import nn

from lorasae.sae import SaeConfig, TopKSAE
from lorasae.sae.batchtopk import BatchTopKConfig, BatchTopKSAE
from lorasae.sae.jumprelu import JumpReLUConfig, JumpReLUSAE
from lorasae.sae.matryoshka import MatryoshkaConfig, MatryoshkaSAE
from lorasae.sae.relu import ReluSAE, ReluSaeConfig
from lorasae.sae.transcoder import Transcoder, TranscoderConfig

ARCHITECTURES = ("topk", "relu", "batchtopk", "matryoshka", "jumprelu", "transcoder", "skip_transcoder")
NEW_ARCHITECTURES = ARCHITECTURES[2:]


def make_dictionary(kind: str, d: int, layer: int, seed: int = 0, d_sae: int | None = None) -> nn.Module:
    """A dictionary of `kind` reading width `d` at `layer` (d_sae = 4 d), random weights, in eval mode.
    BatchTopK / Matryoshka get a positive inference threshold so that a few latents fire per token."""
    torch.manual_seed(seed)
    m = d_sae or 4 * d
    if kind == "topk":
        sae: nn.Module = TopKSAE(SaeConfig(d_in=d, d_sae=m, k=4, hook_layer=layer))
    elif kind == "relu":
        sae = ReluSAE(ReluSaeConfig(d_in=d, d_sae=m, hook_layer=layer))
    elif kind == "batchtopk":
        sae = BatchTopKSAE(BatchTopKConfig(d_in=d, d_sae=m, k=4, hook_layer=layer))
    elif kind == "matryoshka":
        sae = MatryoshkaSAE(MatryoshkaConfig(d_in=d, d_sae=m, k=4, widths=[m // 4, m // 2], hook_layer=layer))
    elif kind == "jumprelu":
        sae = JumpReLUSAE(JumpReLUConfig(d_in=d, d_sae=m, hook_layer=layer, init_threshold=0.3))
    elif kind in ("transcoder", "skip_transcoder"):
        sae = Transcoder(TranscoderConfig(d_in=d, d_sae=m, hook_layer=layer, skip=kind == "skip_transcoder"))
    else:
        raise ValueError(kind)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name.startswith("b_") or name.endswith("bias") or name == "W_skip":
                p.copy_(0.1 * torch.randn_like(p))
        if isinstance(sae, BatchTopKSAE):
            sae.threshold.fill_(0.2)
    return sae.eval()
