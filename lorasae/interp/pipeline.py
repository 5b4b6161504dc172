"""The interpretability analysis over validation chunks: three forward passes per batch, all on one
PeftModel (adapter disabled for the base model):

1. the clean base model (the reference states, and L_base per token);
2. the base model with the SAE spliced (states → distances "base", and L_SAE per token);
3. the LoRA-adapted model with the SAE spliced (states → distances "lora", and L_LoRA+SAE per token).

`analyse` returns the per-sequence numbers; `summarise` turns them into the JSON record (per-layer means,
LoRA − base with percentile-bootstrap intervals over sequences, the per-token loss histogram).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from lorasae.core.gap import paired_gap_se
from lorasae.interp.activations import forward_states, layer_metrics
from lorasae.interp.stats import bootstrap_interval
from lorasae.interp.token_loss import DEFAULT_EDGES, log_histogram, loss_difference, summarise
from lorasae.model.ce import per_token_ce
from lorasae.model.hooks import SpliceFn

VARIANTS = ("base", "lora")


@dataclass
class RawMetrics:
    """Per sequence: L2 distance and cosine similarity to the clean base model at each layer
    (`[N, n_layers]` per variant), and per-token CE `[N, T−1]` of the clean base model (`clean`), the base
    model with the SAE (`sae`) and the adapted model with the SAE (`lora_sae`)."""

    layers: list[int]
    l2: dict[str, Tensor]
    cosine: dict[str, Tensor]
    token_ce: dict[str, Tensor]


def _pass(model: nn.Module, ids: Tensor, layers: Sequence[int], fns: Mapping[int, SpliceFn] | None):
    states, logits = forward_states(model, ids, layers, fns)
    ce = per_token_ce(logits, ids).cpu()
    del logits  # the [B, T, V] logits are the largest tensor of the pass
    return states, ce


@torch.no_grad()
def analyse(
    model: nn.Module,
    chunks: Tensor,
    layers: Sequence[int],
    splice_fns: Callable[[Tensor], Mapping[int, SpliceFn]],
    batch_size: int,
    progress: bool = True,
) -> RawMetrics:
    """The three passes over `chunks` [N, T] (see the module docstring). `model` must be a PeftModel;
    `splice_fns(input_ids)` builds the SAE's splice for a batch (special positions kept when the SAE asks)."""
    if not hasattr(model, "disable_adapter"):
        raise TypeError("analyse needs the LoRA-adapted model (a PeftModel): load it with its adapter")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    l2: dict[str, list[Tensor]] = {v: [] for v in VARIANTS}
    cos: dict[str, list[Tensor]] = {v: [] for v in VARIANTS}
    ce: dict[str, list[Tensor]] = {"clean": [], "sae": [], "lora_sae": []}
    try:
        for start in tqdm(
            range(0, len(chunks), batch_size), desc="interp", disable=not progress, leave=False
        ):
            ids = chunks[start : start + batch_size].to(device)
            fns = splice_fns(ids)
            with model.disable_adapter():
                clean, ce_clean = _pass(model, ids, layers, None)
                base, ce_sae = _pass(model, ids, layers, fns)
            lora, ce_lora = _pass(model, ids, layers, fns)
            for name, states in (("base", base), ("lora", lora)):
                d, c = layer_metrics(clean, states)
                l2[name].append(d)
                cos[name].append(c)
            for name, values in (("clean", ce_clean), ("sae", ce_sae), ("lora_sae", ce_lora)):
                ce[name].append(values)
            del clean, base, lora
    finally:
        model.train(was_training)
    cat = torch.cat
    return RawMetrics(
        list(layers),
        {v: cat(x) for v, x in l2.items()},
        {v: cat(x) for v, x in cos.items()},
        {v: cat(x) for v, x in ce.items()},
    )


def _metric_record(per_seq: Mapping[str, Tensor], confidence: float, resamples: int, seed: int) -> dict:
    base, lora = per_seq["base"].double().numpy(), per_seq["lora"].double().numpy()
    return {
        "base": base.mean(axis=0).tolist(),
        "lora": lora.mean(axis=0).tolist(),
        "lora_minus_base": bootstrap_interval(lora - base, confidence, resamples, seed).as_dict(),
    }


def _gap_se(clean: Tensor, sae: Tensor) -> float:
    """Standard error of the CE gap (sae − clean) from the paired per-sequence CEs (`lorasae.core.gap`)."""
    counts = torch.full((clean.shape[0],), clean.shape[1])
    return paired_gap_se(clean.double().sum(1), counts, sae.double().sum(1), counts)


def summarise_metrics(
    raw: RawMetrics,
    sae_layer: int,
    confidence: float = 0.90,
    resamples: int = 2000,
    seed: int = 0,
    edges: np.ndarray = DEFAULT_EDGES,
) -> dict:
    """The JSON record of one analysis: per layer (from the SAE's layer on) the mean L2 distance and cosine
    similarity of base and LoRA, LoRA − base with bootstrap intervals, the per-sequence values they come
    from, the three mean CEs, and the per-token loss-difference histogram and summary."""
    diff = loss_difference(raw.token_ce["sae"].numpy(), raw.token_ce["lora_sae"].numpy())
    return {
        "layers": raw.layers,
        "layers_after_sae": [layer - sae_layer for layer in raw.layers],
        "num_sequences": int(raw.l2["base"].shape[0]),
        "l2": _metric_record(raw.l2, confidence, resamples, seed),
        "cosine": _metric_record(raw.cosine, confidence, resamples, seed),
        "per_sequence": {
            "l2": {v: raw.l2[v].tolist() for v in VARIANTS},
            "cosine": {v: raw.cosine[v].tolist() for v in VARIANTS},
        },
        "ce": {name: float(values.double().mean()) for name, values in raw.token_ce.items()},
        "ce_gap_se": _gap_se(raw.token_ce["clean"], raw.token_ce["sae"]),
        "token_loss": {"summary": summarise(diff), "histogram": log_histogram(diff, edges)},
    }


__all__ = ["VARIANTS", "RawMetrics", "analyse", "summarise_metrics"]
