"""What the comparison trains, settled before anything loads: per architecture the dictionary's
`train_sae` config, its KL fine-tune's, and the LoRA runs on both (`RowPlan`); the TopK row reuses the
SAE the store finds for (layer, expansion, k) when that SAE's run record is this very run (issue 25's
identity); a LoRA run already done with the same identity (the demo's scaling sweep trains rank 16 on the
main SAE with these settings) is skipped by `train_lora`'s own rule."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from lorasae.core.budget import DEMO_CURVE_EVERY_PCT
from lorasae.dictcompare.config import DictionariesConfig
from lorasae.lora.config import TrainLoraConfig
from lorasae.train.config import TrainSaeConfig
from lorasae.train.sae_kwargs import SaeKwargs


@dataclass(frozen=True)
class RowPlan:
    """One row: the dictionary's training config (resolved), and the saved SAE it reuses, if any."""

    architecture: str
    sae: TrainSaeConfig
    reused: Path | None = None
    """The store's SAE folder whose run record is `sae`'s run (then nothing is trained)."""


def _shape(cfg: DictionariesConfig):
    from lorasae.model.load import model_shape

    return model_shape(cfg.model_name)


def matched_k(cfg: DictionariesConfig) -> int:
    """The L0 every row is matched at: --k, else the model's default k."""
    from lorasae.model.defaults import default_k

    return cfg.k if cfg.k is not None else default_k(_shape(cfg).d_model)


def resolve(sae: TrainSaeConfig) -> TrainSaeConfig:
    shape = _shape_of(sae.model_name)
    return sae.resolved(shape.d_model, shape.max_positions, shape.n_layers)


def _shape_of(model: str | None):
    from lorasae.model.load import model_shape

    return model_shape(str(model))


def sae_config(cfg: DictionariesConfig, architecture: str) -> TrainSaeConfig:
    """The dictionary of one row (not resolved). TopK is the demo's main SAE (its curve validated on every
    validation token every 5 % of training, checkpoints every 10 %); the others validate only at the end (validation never
    changes training) and keep only the final SAE."""
    from lorasae.model.defaults import default_num_val_tokens

    k = matched_k(cfg)
    base = TrainSaeConfig(
        device=cfg.device, model_type=cfg.model_type, model=cfg.model, dataset=cfg.dataset, layer=cfg.layer, num_train_tokens=cfg.sae_tokens,
        seed=cfg.seed, k=k, expansion_factor=cfg.expansion_factor, overwrite=cfg.overwrite,
        curve_val_tokens=default_num_val_tokens(_shape(cfg).d_model), eval_every_pct=DEMO_CURVE_EVERY_PCT,
    )  # fmt: skip
    if architecture == "topk":
        return base
    cheap = replace(base, architecture=architecture, eval_every_pct=100.0, checkpoint_every_pct=100)
    if architecture == "jumprelu":
        kwargs = SaeKwargs(
            l0_coefficient=cfg.l0_coefficient,
            jumprelu_init_threshold=cfg.jumprelu_init_threshold,
            l0_warmup_steps=50,
        )
        return replace(cheap, sae_kwargs=kwargs)
    if architecture in ("transcoder", "skip_transcoder"):  # TopK activation: the same k gives the same L0
        return replace(cheap, sae_kwargs=SaeKwargs(transcoder_activation="topk"))
    return cheap


def kl_config(cfg: DictionariesConfig, parent: TrainSaeConfig, parent_dir: Path) -> TrainSaeConfig:
    """The KL fine-tune (`--objective kl --init_sae`) of the SAE in `parent_dir` trained by `parent`:
    --kl_tokens_pct of the SAE's tokens (default: train_sae.py's), validated before and after on the
    parent's curve tokens."""
    return replace(
        parent,
        init_sae=str(parent_dir),
        objective="kl",
        kl_mse_weight=cfg.kl_mse_weight,
        num_train_tokens=cfg.kl_tokens,
        eval_every_pct=100.0,
        checkpoint_every_pct=100,
        resume=False,
    )


def kl_budget(cfg: DictionariesConfig) -> int:
    """The KL fine-tune's tokens: --kl_tokens_pct of --sae_tokens, else train_sae.py's default for the model."""
    from lorasae.model.defaults import default_num_train_tokens

    return cfg.kl_tokens or default_num_train_tokens(_shape(cfg).d_model, "kl")


def lora_config(cfg: DictionariesConfig, folder: Path) -> TrainLoraConfig:
    """LoRA (rank --rank, every layer, --lora_examples sequences) on the SAE in `folder`, validated only
    at the end (validation never changes training; the scaling sweep's runs do the same)."""
    return TrainLoraConfig(
        device=cfg.device, model_type=cfg.model_type, model=cfg.model, dataset=cfg.dataset, sae=[str(folder)], sae_layer=str(cfg.layer),
        rank=cfg.rank, num_train_examples=cfg.lora_examples, save_model=True, seed=cfg.seed,
        progress=False, skip_existing=not cfg.overwrite, overwrite=cfg.overwrite,
        eval_every=cfg.lora_examples,
    )  # fmt: skip


def reusable_sae(sae: TrainSaeConfig) -> Path | None:
    """The store's TopK SAE for (layer, expansion, k) when its run record is `sae`'s very run, else None."""
    from lorasae.sae.sources import SaeNotFoundError
    from lorasae.store.saes import find_sae
    from lorasae.train.sae_record import finished_run

    resolved = resolve(sae)
    try:
        ref = find_sae(
            sae.model_name, resolved.layer, k=resolved.k, expansion_factor=resolved.expansion_factor
        )
    except SaeNotFoundError:
        return None
    folder = Path(ref.source)
    return folder if folder.is_dir() and finished_run(resolved, folder) is not None else None


def plan_rows(cfg: DictionariesConfig) -> list[RowPlan]:
    """Every row of the comparison, in --architectures order."""
    rows = []
    for architecture in cfg.architectures:
        sae = resolve(sae_config(cfg, architecture))
        reused = reusable_sae(sae) if architecture == "topk" and not cfg.overwrite else None
        rows.append(RowPlan(architecture, sae, reused))
    return rows
