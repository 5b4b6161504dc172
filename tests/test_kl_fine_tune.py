"""Issue 28 item 5: KL fine-tuning as a method. `train_sae.py --init_sae <SAE> --objective kl` is the
e2e objective (KL to the original model's next-token distribution with the SAE spliced) + w·FVU, started
from the SAE's weights: on the built-in world it lowers the spliced CE of a TopK SAE, is saved as
`<tag>__kl-ft` with a record naming its parent (which the store still finds as the default SAE), and
`train_lora.py --sae <fine-tuned folder>` adapts the model to it (the combination)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lorasae.core.cli import parse
from lorasae.core.config_files import parse_with_config_file
from lorasae.core.records import read_record
from lorasae.train.config import TrainSaeConfig
from lorasae.train.objectives import e2e_step

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(world_model: Path, *extra: str) -> TrainSaeConfig:
    base = ["--device", "cpu", "--model", str(world_model), "--dataset", "builtin", "--layer", "0", "--k", "2",
            "--expansion_factor", "4", "--num_val_tokens", "4096", "--curve_val_tokens", "4096", "--eval_every_pct", "50",
            "--checkpoint_every_pct", "100", "--log_every_steps", "50"]  # fmt: skip
    return parse_with_config_file(TrainSaeConfig, [*base, *extra])


def test_kl_fine_tune_lowers_spliced_ce_names_its_parent_and_takes_lora(world_model, out_root):
    from lorasae.lora.config import TrainLoraConfig
    from lorasae.lora.run import main as train_lora_main
    from lorasae.store.saes import find_sae
    from lorasae.train.sae_trainer import train_sae

    parent = train_sae(_config(world_model, "--num_train_tokens", "60k", "--lr", "3e-3"))
    tuned = train_sae(
        _config(world_model, "--init_sae", str(parent.final_dir), "--objective", "kl", "--num_train_tokens", "8k",
                "--lr", "1e-3", "--lr_warmup_steps", "1")
    )  # fmt: skip
    folder = Path(tuned.final_dir)
    assert (
        folder.parent.name == f"{Path(parent.final_dir).parent.name}__kl-ft__n-8000_lr-0.001_warmup-1"
        and folder.parts[-3] == "normal"
    )
    # the curve's first point is the parent SAE spliced (same weights); the fine-tune lowers it
    assert tuned.val_loss[0] == pytest.approx(parent.val_loss[-1], abs=1e-4)
    assert tuned.val_loss[-1] < tuned.val_loss[0] - 0.01, tuned.val_loss
    record = read_record(folder)
    assert record.get("settings")["objective"] == "kl"
    assert record.get("init_sae")["source"] in [str(p) for p in record.parents]
    assert Path(find_sae(str(world_model), 0).source) == Path(
        parent.final_dir
    )  # the parent stays the default
    lora_cfg = parse(
        TrainLoraConfig,
        ["--device", "cpu", "--model", str(world_model), "--dataset", "builtin", "--sae", str(folder),
         "--LoRA_layers", "after", "--rank", "4", "--num_train_examples", "20", "--num_val_tokens", "2048",
         "--progress", "false"],
    )  # fmt: skip
    (summary,) = train_lora_main(lora_cfg)
    assert torch.isfinite(torch.tensor(summary.result.ce_gap))


def test_a_kl_fine_tune_of_the_default_sae_writes_its_own_curve_not_the_default_sae_curve(world_model):
    """Found running README's commands after the demo: the fine-tune of the model's default SAE wrote the
    default SAE's curve files (the timing figure's), replacing them."""
    from lorasae.model.defaults import sae_defaults
    from lorasae.model.load import model_shape
    from lorasae.train.state import curve_path

    shape = model_shape(str(world_model))
    layer, expansion, k = sae_defaults(shape)
    flags = ["--layer", str(layer), "--expansion_factor", str(expansion), "--k", str(k)]
    # train_sae.py's defaults otherwise (the world folder's default data, its validation tokens): the
    # default SAE's plain name (issue 25: any other setting is named in the folder and its curve file)
    plain = {"dataset": None, "num_val_tokens": None, "curve_val_tokens": None}
    default = replace(_config(world_model, *flags), **plain)
    tuned = replace(_config(world_model, *flags, "--init_sae", "some/folder", "--objective", "kl"), **plain)
    for quantity in ("val_loss", "time"):
        assert curve_path(default, quantity, shape).name == "normal_SAE.json"
        name = curve_path(tuned, quantity, shape).name  # named after its folder (its parent: --init_sae's)
        assert "__kl-ft__" in name and name.endswith(f"__layer_{layer}_SAE.json")


def test_the_kl_objective_adds_the_weighted_fvu_to_the_e2e_kl():
    """e2e_step with mse_weight w = its KL (w = 0) + w · ‖x̂ − x‖² / Σ‖x − mean‖² (recomputed by hand)."""
    from conftest import make_tiny_model

    from lorasae.model.hooks import residual_at
    from lorasae.sae import SaeConfig, TopKSAE

    torch.manual_seed(0)
    model = make_tiny_model("llama", n_layers=2, d=16).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    sae = TopKSAE(SaeConfig(d_in=16, d_sae=32, k=3))
    ids = torch.randint(0, 50, (2, 8))
    kl, _, _ = e2e_step(model, sae, ids, 0, 0.0, None)
    mixed, _, _ = e2e_step(model, sae, ids, 0, 0.0, None, mse_weight=0.5)
    x = residual_at(model, ids, 0).reshape(-1, 16).double()
    x_hat = sae(x.float()).x_hat.double()
    fvu = (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert float(mixed) == pytest.approx(float(kl) + 0.5 * float(fvu), rel=1e-5)


def test_objective_kl_needs_an_sae_to_fine_tune_and_kl_mse_weight_needs_a_kl():
    assert TrainSaeConfig(objective="kl").problems(32, 128) == [
        "--objective kl fine-tunes an existing SAE: give it with --init_sae <folder>"
    ]
    assert TrainSaeConfig(kl_mse_weight=0.5).problems(32, 128) == [
        "--kl_mse_weight weighs the FVU next to the KL: use it with --objective kl or --e2e"
    ]
    assert TrainSaeConfig(objective="kl", init_sae="x").mse_weight == 1.0
    assert TrainSaeConfig(e2e=True).mse_weight == 0.0


def test_a_kl_fine_tune_of_another_k_or_an_init_sae_of_another_architecture_is_refused(tmp_path, monkeypatch):
    from sae_train_helpers import fast_config, write_tiny_world

    from lorasae.sae import SaeShapeError
    from lorasae.train.sae_trainer import train_sae

    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    model_dir, data = write_tiny_world(tmp_path)
    short = {"num_train_tokens": 128, "eval_every_pct": 100, "checkpoint_every_pct": 100}
    parent = train_sae(fast_config(model_dir, data, **short))  # k = 4
    with pytest.raises(SaeShapeError, match="pass --k 4"):
        train_sae(fast_config(model_dir, data, init_sae=str(parent.final_dir), objective="kl", k=3, **short))
    with pytest.raises(SaeShapeError, match="pass the --architecture it was trained with"):
        train_sae(
            fast_config(model_dir, data, init_sae=str(parent.final_dir), architecture="batchtopk", **short)
        )


def test_a_kl_fine_tune_defaults_to_karvonens_25m_tokens_on_hub_models_and_a_short_run_on_built_in_ones():
    """--num_train_tokens left out: Karvonen's 25M-token KL fine-tune (arXiv 2503.17272) on Gemma-2-2B's
    shape, a run of seconds on the built-in model's; the SAE training budget is unchanged (2B; the demo's
    200k on small models, issue 25)."""
    from lorasae.model.defaults import KL_FINE_TUNE_TOKENS, SMALL_MODEL_KL_FINE_TUNE_TOKENS

    kl = ["--objective", "kl", "--init_sae", "some/folder"]
    gemma = parse(TrainSaeConfig, ["--model_type", "gemma", *kl]).resolved(2304, 8192, 26)
    tiny = parse(TrainSaeConfig, ["--model_type", "tiny", *kl]).resolved(128, 128, 4)
    assert gemma.num_train_tokens == KL_FINE_TUNE_TOKENS == 25_000_000
    assert tiny.num_train_tokens == SMALL_MODEL_KL_FINE_TUNE_TOKENS < 100_000
    for model, shape, sae_tokens in (
        ("gemma", (2304, 8192, 26), 2_000_000_000),
        ("tiny", (128, 128, 4), 200_000),
    ):
        assert parse(TrainSaeConfig, ["--model_type", model]).resolved(*shape).num_train_tokens == sae_tokens
        given = parse(TrainSaeConfig, ["--model_type", model, *kl, "--num_train_tokens", "8k"]).resolved(
            *shape
        )
        assert given.num_train_tokens == 8000


def test_kl_fine_tunes_of_two_checkpoints_of_one_sae_write_two_folders_each_named_after_its_parent(
    world_model,
):
    """The timing figure fine-tunes every TopK checkpoint: `<parent tag>__kl-ft` must name the checkpoint
    (a fine-tune of the 20 % checkpoint and one of the final SAE may not share a folder)."""
    from lorasae.model.load import model_shape
    from lorasae.train.state import checkpoint_dir

    shape = model_shape(str(world_model))
    parent = _config(world_model).resolved(shape.d_model, shape.max_positions, shape.n_layers)
    final, at_20 = checkpoint_dir(parent), checkpoint_dir(parent, 20)

    def tuned_dir(init: Path) -> Path:
        cfg = _config(world_model, "--init_sae", str(init), "--objective", "kl")
        return checkpoint_dir(cfg.resolved(shape.d_model, shape.max_positions, shape.n_layers))

    assert tuned_dir(final).parent.name == f"{final.parent.name}__kl-ft"
    assert tuned_dir(at_20).parent.name == f"{at_20.parent.name}__kl-ft"
    # an SAE from elsewhere (not one of this family's folders): the family's tag, the parent in the variant
    elsewhere = tuned_dir(Path("elsewhere/some_sae")).parent.name
    assert (
        elsewhere.startswith(f"{final.parent.name.split('__')[0]}__kl-ft__") and "init-some_sae" in elsewhere
    )


def test_kl_fine_tunes_of_one_parent_at_two_budgets_keep_two_folders_and_the_default_keeps_the_plain_name(
    world_model, out_root
):
    """Issue 25: a KL fine-tune's folder named only its parent, so another budget or FVU weight of the same
    parent was refused ("already holds an SAE trained with other settings"). A setting off train_sae.py's
    default now appears in the name; the default fine-tune keeps `<parent>__kl-ft`."""
    from lorasae.core.records import read_record
    from lorasae.model.defaults import SMALL_MODEL_KL_FINE_TUNE_TOKENS
    from lorasae.model.load import model_shape
    from lorasae.train.sae_trainer import train_sae
    from lorasae.train.state import checkpoint_dir

    shape = model_shape(str(world_model))
    parent = train_sae(_config(world_model, "--num_train_tokens", "8k"))
    family = Path(parent.final_dir).parent.name
    kl = ["--init_sae", str(parent.final_dir), "--objective", "kl", "--eval_every_pct", "100"]

    def tuned(*flags: str) -> TrainSaeConfig:
        return _config(world_model, *kl, *flags).resolved(shape.d_model, shape.max_positions, shape.n_layers)

    assert tuned().num_train_tokens == SMALL_MODEL_KL_FINE_TUNE_TOKENS
    assert checkpoint_dir(tuned()).parent.name == f"{family}__kl-ft"  # the default: the plain name
    assert checkpoint_dir(tuned("--num_train_tokens", "32768", "--kl_mse_weight", "1")).parent.name == (
        f"{family}__kl-ft"
    )
    assert checkpoint_dir(tuned("--kl_mse_weight", "0.5")).parent.name == f"{family}__kl-ft__w-0.5"
    small = train_sae(tuned("--num_train_tokens", "2048"))
    large = train_sae(tuned("--num_train_tokens", "4096"))  # was refused: the folder held the 2048-token one
    assert Path(small.final_dir).parent.name == f"{family}__kl-ft__n-2048"
    assert Path(large.final_dir).parent.name == f"{family}__kl-ft__n-4096"
    for result, tokens in ((small, 2048), (large, 4096)):  # both kept, each with its own record
        assert read_record(Path(result.final_dir)).get("settings")["num_train_tokens"] == tokens
