"""Which SAEs the analyses run over: the built-in model's SAE families (a width sweep at fixed k, the
demo's k sweep), trained with `train_sae` when missing, or a Gemma Scope width sweep at fixed L0 picked
offline from sae-lens's bundled directory (`sweep.catalog`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lorasae.core.budget import DEMO_SAE_TOKENS
from lorasae.sweep.catalog import gemma_scope_catalog

if TYPE_CHECKING:
    from lorasae.train.config import TrainSaeConfig

PAPER_L0 = 60
"""The paper's width sweep holds L0 ≈ 60 (Gemma Scope's average_l0 closest to it at each width)."""


def gemma_scope_width_sweep(model: str = "gemma", layer: int | None = None, l0: float = PAPER_L0,
                            min_width: int = 16384) -> list[str]:  # fmt: skip
    """`release/sae_id` of the Gemma Scope SAE with L0 closest to `l0` at every width ≥ `min_width` of
    the layer (default: the paper's, 12 of 2B or 20 of 9B). Offline: reads sae-lens's directory."""
    from lorasae.sweep.catalog import GEMMA_SCOPE

    catalog = gemma_scope_catalog(model)
    layer = GEMMA_SCOPE[model].layer if layer is None else layer
    picks = [catalog.pick(layer, w, l0=l0) for w in catalog.widths(layer) if w >= min_width]
    return [p.source for p in picks if p is not None]


def sae_config(
    model: str,
    layer: int,
    expansion: int,
    k: int,
    sae_tokens: int = DEMO_SAE_TOKENS,
    seed: int = 42,
    dataset: str | None = None,
    device: str = "cpu",
) -> TrainSaeConfig:
    """The train_sae.py run of one of our SAEs of the analyses (validated every 50 %): its folder is
    `lorasae.train.state.planned_dir` of it (the budget, seed and data named there when not defaults)."""
    from lorasae.train.config import TrainSaeConfig

    return TrainSaeConfig(device=device, model=model, layer=layer, expansion_factor=expansion, k=k,
                          num_train_tokens=sae_tokens, seed=seed, eval_every_pct=50.0, dataset=dataset)  # fmt: skip


def our_sae_sources(
    model: str,
    layer: int,
    expansions: Sequence[int] = (),
    k: int | None = None,
    ks: Sequence[int] = (),
    k_expansion: int = 8,
    train_missing: bool = False,
    sae_tokens: int = DEMO_SAE_TOKENS,
    device: str = "cpu",
    seed: int = 42,
    dataset: str | None = None,
) -> tuple[list[str], list[str]]:
    """(width sweep: ×E at fixed `k` for each E in `expansions`, k sweep: ×`k_expansion` at each of `ks`)
    as folders under saved_saes/<model>/normal/; `train_missing` trains any that is absent with
    `train_sae` (`sae_tokens` tokens each of `dataset`), else a missing one raises FileNotFoundError."""
    from lorasae.train.config import default_k

    if k is None:
        from lorasae.model.load import d_model, load_model

        k = default_k(d_model(load_model(model, device="cpu")[0]))
    from lorasae.train.state import planned_dir

    def config(e: int, kk: int) -> TrainSaeConfig:
        return sae_config(model, layer, e, kk, sae_tokens, seed, dataset, device)

    wanted = [(e, k) for e in expansions] + [(k_expansion, kk) for kk in ks]
    for e, kk in dict.fromkeys(wanted):
        folder = planned_dir(config(e, kk))  # where train_sae.py writes it (its settings in the name)
        if (folder / "cfg.json").exists():
            continue
        if not train_missing:
            raise FileNotFoundError(
                f"No SAE at {folder}: train it (`python train_sae.py --model_type {model} --layer {layer} "
                f"--expansion_factor {e} --k {kk} --num_train_tokens {sae_tokens} --seed {seed}`) or pass "
                "--train_missing."
            )
        from lorasae.train.sae_trainer import train_sae

        train_sae(config(e, kk))
    width = [str(planned_dir(config(e, k))) for e in expansions]
    k_sweep = [str(planned_dir(config(k_expansion, kk))) for kk in ks]
    return width, k_sweep
