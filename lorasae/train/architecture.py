"""The dictionary a `train_sae.py` run trains, from the architecture registry (`lorasae.sae.registry`):
the run's `DictionarySpec`, the fresh dictionary, whether its loss has an L1 term and λ at each step
(with its warm-up), and, with `--compile`, the compiled forward."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from lorasae.model.load import model_key
from lorasae.sae.jumprelu import l0_coefficient
from lorasae.sae.registry import Architecture, DictionarySpec, architecture
from lorasae.train.config import TrainSaeConfig
from lorasae.train.schedule import sparsity_coef


def entry(cfg: TrainSaeConfig) -> Architecture:
    """The registry entry of `--architecture`."""
    return architecture(cfg.architecture)


def dictionary_spec(cfg: TrainSaeConfig, d_model: int) -> DictionarySpec:
    """What the (resolved) run asks of its dictionary; multi-source architectures read --layers of one
    model, or --layer of each of --models."""
    layers = list(cfg.layers) or [cfg.layer] * len(cfg.models)
    return DictionarySpec(
        d_in=d_model,
        d_sae=d_model * cfg.expansion_factor,
        k=cfg.k,
        model_name=cfg.model_name,
        hook_layer=cfg.layer,
        hook_layers=layers,
        source_names=[model_key(m) for m in cfg.models] or [f"layer{x}" for x in layers],
        model_names=list(cfg.models) or [cfg.model_name] * len(layers),
        settings=dataclasses.asdict(cfg.sae_kwargs),
    )


def build_sae(cfg: TrainSaeConfig, d_model: int, device: torch.device) -> nn.Module:
    """A freshly initialised SAE of `cfg.architecture` (resolved config) for a d_model-wide stream."""
    return entry(cfg).build(dictionary_spec(cfg, d_model), device)


def _sparsity_kind(cfg: TrainSaeConfig) -> str:
    return entry(cfg).sparsity(dataclasses.asdict(cfg.sae_kwargs))


def uses_sparsity(cfg: TrainSaeConfig) -> bool:
    """Whether the run's loss has a sparsity term (ReLU SAEs and crosscoders' L1, JumpReLU's L0)."""
    return _sparsity_kind(cfg) in ("l1", "l0")


def step_sparsity(cfg: TrainSaeConfig, step: int) -> float:
    """λ at 0-based `step` (0 for architectures without a sparsity term): --sparsity warmed up from λ/N
    for an L1 term; --l0_coefficient warmed up from 0 (SAELens's schedule) for JumpReLU's L0 term."""
    kind, kw = _sparsity_kind(cfg), cfg.sae_kwargs
    if kind == "l0":
        return l0_coefficient(step, kw.l0_coefficient, kw.l0_warmup_steps)
    if kind != "l1":
        return 0.0
    return sparsity_coef(step, kw.sparsity, kw.sparsity_warmup_steps)


def maybe_compile(module: nn.Module, enabled: bool) -> nn.Module:
    """`torch.compile(module)` with `--compile` (the parameters are shared with `module`); else `module`."""
    return torch.compile(module) if enabled else module  # type: ignore[return-value]
