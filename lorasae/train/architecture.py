"""The SAE a `train_sae.py` run trains, built from its settings by `--architecture` (the classes are
`lorasae.sae.registry`'s), and what each architecture adds to the step: the L1 coefficient of ReLU SAEs
at each step (with its warm-up) and, with `--compile`, the compiled forward."""

from __future__ import annotations

import torch
from torch import nn

from lorasae.models import model_key
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.sae.crosscoder import Crosscoder, CrosscoderConfig
from lorasae.sae.registry import sae_class
from lorasae.sae.relu import ReluSAE, ReluSaeConfig
from lorasae.train.config import TrainSaeConfig
from lorasae.train.schedule import sparsity_coef


def build_sae(cfg: TrainSaeConfig, d_model: int, device: torch.device) -> nn.Module:
    """A freshly initialised SAE of `cfg.architecture` (resolved config) for a d_model-wide stream."""
    sae_class(cfg.architecture)  # a clear error for an unknown name
    d_sae = d_model * cfg.expansion_factor
    if cfg.architecture == "relu":
        return ReluSAE(
            ReluSaeConfig(d_in=d_model, d_sae=d_sae, model_name=cfg.model_name, hook_layer=cfg.layer),
            device=device,
        )
    if cfg.architecture == "crosscoder":
        # sources: --layers of one model, or --layer of each of --models
        layers = list(cfg.layers) or [cfg.layer] * len(cfg.models)
        coder_cfg = CrosscoderConfig(
            d_in=[d_model] * len(layers),
            d_sae=d_sae,
            k=cfg.k,
            activation=cfg.sae_kwargs.crosscoder_activation,
            sources=[model_key(m) for m in cfg.models] or [f"layer{x}" for x in layers],
            model_names=list(cfg.models) or [cfg.model_name] * len(layers),
            hook_layers=layers,
        )
        return Crosscoder(coder_cfg, device=device)
    return TopKSAE(
        SaeConfig(d_in=d_model, d_sae=d_sae, k=cfg.k, model_name=cfg.model_name, hook_layer=cfg.layer),
        device=device,
    )


def uses_sparsity(cfg: TrainSaeConfig) -> bool:
    """Whether the run's loss has an L1 term (ReLU SAEs and ReLU crosscoders)."""
    return cfg.architecture == "relu" or (
        cfg.architecture == "crosscoder" and cfg.sae_kwargs.crosscoder_activation == "relu"
    )


def step_sparsity(cfg: TrainSaeConfig, step: int) -> float:
    """λ at 0-based `step` (0 for architectures without an L1 term)."""
    if not uses_sparsity(cfg):
        return 0.0
    return sparsity_coef(step, cfg.sae_kwargs.sparsity, cfg.sae_kwargs.sparsity_warmup_steps)


def maybe_compile(module: nn.Module, enabled: bool) -> nn.Module:
    """`torch.compile(module)` with `--compile` (the parameters are shared with `module`); else `module`."""
    return torch.compile(module) if enabled else module  # type: ignore[return-value]
