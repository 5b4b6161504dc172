"""Steering one split: the (tuning, test) splits of positives and negative sets (`build_splits`), and the
`Evaluator` that steers a split through each model variant and gives the log-likelihoods and normalised
Δs of one alpha (`Outcome`)."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lorasae.hooks import residual_at
from lorasae.llm import LLMClient, LLMSettings
from lorasae.steering.args import SteeringArgs
from lorasae.steering.context import SteeringContext
from lorasae.steering.intervention import steer
from lorasae.steering.loglik import encode_texts, mean_logliks, pad_batch
from lorasae.steering.negatives import EvalSets, load_negative_sets, split_sets, tuning_set_name
from lorasae.steering.positives import load_positives
from lorasae.steering.stats import normalised_delta


@dataclass
class Outcome:
    """Log-likelihoods and normalised Δs of one alpha: `[model kind][set name] -> per-example array`."""

    alpha: float
    mode: str
    unsteered: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    steered: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    delta: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


class Evaluator:
    """Steers one split through each model variant; unsteered log-likelihoods are computed once."""

    def __init__(
        self,
        ctx: SteeringContext,
        sets: EvalSets,
        batch_size: int = 16,
        max_length: int = 64,
        scale: float = 100.0,
    ) -> None:
        self.ctx = ctx
        self.batch_size = batch_size
        self.scale = scale
        tok = ctx.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        named = {"positive": sets.positive} | dict(sets.negatives)
        self.seqs = {name: encode_texts(tok, texts, max_length) for name, texts in named.items()}
        self._unsteered: dict[tuple[str, str], np.ndarray] = {}

    def _logliks(self, kind: str, name: str, alpha: float | None, mode: str) -> np.ndarray:
        with self.ctx.variant(kind):
            edit = (
                steer(self.ctx.model, self.ctx.layer, self.ctx.direction(), alpha, mode)
                if alpha is not None
                else nullcontext()
            )
            with edit:
                return mean_logliks(self.ctx.model, self.seqs[name], self.batch_size, self.pad_id)

    def unsteered(self, kind: str, name: str) -> np.ndarray:
        key = (kind, name)
        if key not in self._unsteered:
            self._unsteered[key] = self._logliks(kind, name, None, "multiplicative")
        return self._unsteered[key]

    def evaluate(self, alpha: float, mode: str = "multiplicative", progress: bool = False) -> Outcome:
        out = Outcome(float(alpha), mode)
        jobs = [(kind, name) for kind in self.ctx.kinds for name in self.seqs]
        for kind, name in tqdm(jobs, desc=f"alpha={alpha:g}", leave=False, disable=not progress):
            u = self.unsteered(kind, name)
            s = self._logliks(kind, name, alpha, mode)
            out.unsteered.setdefault(kind, {})[name] = u
            out.steered.setdefault(kind, {})[name] = s
            out.delta.setdefault(kind, {})[name] = normalised_delta(u, s, self.scale)
        return out

    @torch.no_grad()
    def residual_rms(self) -> float:
        """RMS norm of the residual stream at the steered layer over the split's tokens (BOS excluded)."""
        skip = 1 if self.ctx.tokenizer.bos_token_id is not None else 0
        total, count = 0.0, 0
        device = next(self.ctx.model.parameters()).device
        with self.ctx.variant("base"):
            for seqs in self.seqs.values():
                for start in range(0, len(seqs), self.batch_size):
                    batch = seqs[start : start + self.batch_size]
                    ids, mask = pad_batch(batch, self.pad_id)
                    h = residual_at(self.ctx.model, ids.to(device), self.ctx.layer, mask.to(device)).float()
                    m = mask.to(device).bool().clone()
                    m[:, :skip] = False
                    total += float(h[m].pow(2).sum())
                    count += int(m.sum())
        return math.sqrt(total / max(count, 1))


def build_splits(
    ctx: SteeringContext, args: SteeringArgs, llm: LLMClient | None = None, positives: Path | None = None
) -> tuple[EvalSets, EvalSets]:
    """(tuning, test) splits of the latent's positives (`positives`: their file; default: those of the
    default settings) and the negative sets."""
    if ctx.latent is None:
        raise ValueError("choose the latent first")
    kind = args.negatives_kind
    seed = ctx.world_seed if kind == "builtin" and ctx.world_seed is not None else args.seed
    negatives = load_negative_sets(kind, args.num_negatives, seed, llm)
    return split_sets(
        load_positives(ctx.latent, positives),
        negatives,
        tuning_set_name(kind),
        args.tuning_fraction,
        args.seed,
    )


def llm_from_env() -> LLMClient | None:
    settings = LLMSettings.from_env()
    return LLMClient(settings) if settings.available else None


__all__ = [
    "Evaluator",
    "Outcome",
    "build_splits",
]
