"""The comparison's runs (`comparison.run_comparison` orders them): per row train (or reuse) the dictionary,
KL fine-tune it, LoRA on both, through the project's one SAE trainer (`train_sae`) and one LoRA pipeline (`train_lora`'s
`main_many`, whose validation CE is `lorasae.model.ce`'s); then the table (`table`) and the figure.
Every run writes where its own run record says; an identical rerun is skipped by those rules. The KL
fine-tunes of the TopK checkpoints (--kl_checkpoints, the timing figure's) run here too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorasae.dictcompare.config import DictionariesConfig
from lorasae.dictcompare.plan import RowPlan, kl_config, lora_config, resolve
from lorasae.dictcompare.table import LoraNumbers, Row

RERUN = "python eval/dictionaries/run.py"


@dataclass(frozen=True)
class SaeNumbers:
    folder: Path
    l0: float
    fvu: float
    minutes: float


def _sae(plan: RowPlan) -> SaeNumbers:
    """Train the row's dictionary (an identical finished run is skipped by `train_sae`), or read the
    reused SAE's recorded numbers."""
    from lorasae.core.records import read_record
    from lorasae.train.sae_record import recorded_result
    from lorasae.train.sae_trainer import train_sae

    if plan.reused is not None:
        result = recorded_result(read_record(plan.reused), plan.sae)
        folder = plan.reused
    else:
        result = train_sae(plan.sae)
        folder = Path(result.final_dir)
    return SaeNumbers(folder, result.val_l0, result.val_fvu, result.minutes[-1] if result.minutes else 0.0)


def fine_tune(cfg: DictionariesConfig, parent, parent_dir: Path) -> SaeNumbers:
    """KL fine-tune of the SAE in `parent_dir` (skipped when this very fine-tune is done)."""
    from lorasae.train.sae_trainer import train_sae

    result = train_sae(resolve(kl_config(cfg, parent, parent_dir)))
    return SaeNumbers(Path(result.final_dir), result.val_l0, result.val_fvu, result.minutes[-1])


def _lora(cfg: DictionariesConfig, folder: Path) -> LoraNumbers:
    """LoRA on the SAE in `folder` (skipped when done), read back from the run's own outputs."""
    from lorasae.core.atomic import read_output_json
    from lorasae.lora.plan import plan_runs
    from lorasae.lora.run import main_many

    run = lora_config(cfg, folder)
    main_many([run])
    (planned,) = plan_runs(run)
    assert planned.run_id is not None
    ce = read_output_json(planned.run_id.json_path("CE_increase"), RERUN)
    minutes = read_output_json(planned.run_id.json_path("time"), RERUN)
    return LoraNumbers(float(ce["base"]), float(ce["initial"]), float(ce["converged"]), float(minutes[-1]))


def kl_unsupported(cfg: DictionariesConfig, plan: RowPlan) -> str:
    """Why the row's dictionary cannot be KL fine-tuned ('' when it can): train_sae's own refusal."""
    from lorasae.train.transcoder_parts import TRANSCODERS, check_supported

    if plan.architecture not in TRANSCODERS:
        return ""
    try:
        check_supported(resolve(kl_config(cfg, plan.sae, Path("parent"))))
    except ValueError as err:
        return str(err).rstrip(".")
    return ""


def run_row(cfg: DictionariesConfig, plan: RowPlan) -> Row:
    sae = _sae(plan)
    lora = _lora(cfg, sae.folder)
    missing = kl_unsupported(cfg, plan)
    if missing:
        return Row(plan.architecture, sae.l0, sae.fvu, sae.minutes, None, lora, None,
                   reused=plan.reused is not None, kl_missing=missing)  # fmt: skip
    tuned = fine_tune(cfg, plan.sae, kl_parent(cfg, plan, sae.folder))
    both = _lora(cfg, tuned.folder)
    return Row(plan.architecture, sae.l0, sae.fvu, sae.minutes, tuned.minutes, lora, both,
               reused=plan.reused is not None)  # fmt: skip


def kl_parent(cfg: DictionariesConfig, plan: RowPlan, folder: Path) -> Path:
    """The SAE the row's KL fine-tune starts from: the dictionary itself, except for the TopK row when the
    timing figure fine-tunes the 100 % checkpoint too (the same weights): that one fine-tune serves both."""
    if plan.architecture == "topk" and 100 in cfg.kl_checkpoints:
        return _checkpoint_folder(cfg, plan.sae, 100)
    return folder


def _checkpoint_folder(cfg: DictionariesConfig, parent, pct: int) -> Path:
    """The store's folder of the TopK SAE's `pct` % checkpoint (100: the final SAE when none was kept)."""
    from lorasae.store.saes import our_sae_runs

    (run,) = our_sae_runs(cfg.model_name, [cfg.layer], "normal", parent.expansion_factor, parent.k, pct)
    return Path(run.refs[0].source)


def fine_tune_checkpoints(cfg: DictionariesConfig) -> list[Path]:
    """KL fine-tunes of the TopK SAE's --kl_checkpoints (the store's checkpoint folders), for the timing figure."""
    from lorasae.dictcompare.plan import sae_config

    parent = resolve(sae_config(cfg, "topk"))
    return [fine_tune(cfg, parent, _checkpoint_folder(cfg, parent, pct)).folder for pct in cfg.kl_checkpoints]
