"""train_sae.py on the grokking world: the `grok:<task>` dataset (train problems only, deterministic), the
`--positions` selection (the harvest equals the study's answer activations), and a crosscoder across two
checkpoints (`--models`) that trains, is saved under the checkpoints' own names and loads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from grok_helpers import small_grok_config

from lorasae.core import grok_paths
from lorasae.core.config_files import parse_with_config_file
from lorasae.core.errors import PreflightError
from lorasae.grok.saes import answer_activations
from lorasae.grok_world.data import grok_source, parse_grok_source
from lorasae.grok_world.tasks import ModularTask
from lorasae.grok_world.train import checkpoint_steps, train_grok
from lorasae.model.ce import ce_sum_and_count, mean_ce
from lorasae.model.data import load_token_split
from lorasae.model.hooks import residual_at
from lorasae.model.load import load_model, model_key
from lorasae.sae.crosscoder import Crosscoder
from lorasae.sae.registry import load_ours
from lorasae.train.config import TrainSaeConfig
from lorasae.train.distributed import DistInfo
from lorasae.train.harvest import ActivationBuffer
from lorasae.train.positions import at_positions
from lorasae.train.sae_trainer import train_sae

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = small_grok_config()
SOURCE = grok_source(CFG.task)  # grok:addition_p11_frac0.5_seed0
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("grok_sae")
    result = train_grok(CFG, base, progress=False)
    pre = grok_paths.grok_checkpoint_dir(CFG.run_name, checkpoint_steps(CFG.run_name, base)[1], base)
    return pre, result.final_dir


def _rows(t: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in t}


def test_grok_source_names_the_task_and_fills_in_defaults():
    assert parse_grok_source(SOURCE) == CFG.task
    assert parse_grok_source("grok:division_p7") == ModularTask("division", 7, 0.4, 0)
    with pytest.raises(ValueError, match="grok:<task>"):
        parse_grok_source("grok:add-97")
    with pytest.raises(ValueError, match="unknown task"):
        parse_grok_source("grok:power_p7")


def test_grok_split_is_the_train_problems_with_their_answers_deterministically():
    split = load_token_split(SOURCE, None, ctx_len=4, num_val_tokens=32, seed=3)
    p = CFG.task.prime
    pairs = CFG.task.pairs()
    train_idx, test_idx = CFG.task.split()
    expected = {(int(a), int(b), p, int((a + b) % p)) for a, b in pairs[train_idx]}
    test_pairs = {(int(a), int(b)) for a, b in pairs[test_idx]}
    n_train = len(train_idx)
    assert split.val.shape == (8, 4)
    first_epoch = torch.stack([c for _, c in zip(range(n_train - 8), split.train_chunks())])
    assert _rows(split.val) | _rows(first_epoch) == expected  # every train problem once, nothing else
    assert not _rows(split.val) & _rows(first_epoch)
    assert not {(a, b) for a, b, _, _ in _rows(first_epoch)} & test_pairs
    again = load_token_split(SOURCE, None, ctx_len=4, num_val_tokens=32, seed=3)
    assert torch.equal(again.val, split.val)
    # epochs reshuffle (seeded); skipping resumes the same stream
    stream = [c for _, c in zip(range(3 * n_train), split.train_chunks())]
    second_epoch = torch.stack(stream[n_train - 8 : 2 * (n_train - 8)])
    assert _rows(second_epoch) == _rows(first_epoch) and not torch.equal(second_epoch, first_epoch)
    skipped = [c for _, c in zip(range(10), split.train_chunks(skip=n_train - 3))]
    assert all(torch.equal(a, b) for a, b in zip(skipped, stream[n_train - 3 :]))
    other_seed = load_token_split(SOURCE, None, ctx_len=4, num_val_tokens=32, seed=4)
    assert not torch.equal(other_seed.val, split.val)


def test_grok_split_refuses_other_context_lengths_and_too_much_validation():
    with pytest.raises(PreflightError, match="--ctx_len 4"):
        load_token_split(SOURCE, None, ctx_len=8, num_val_tokens=32, seed=0)
    with pytest.raises(PreflightError, match="--num_val_tokens"):
        load_token_split(SOURCE, None, ctx_len=4, num_val_tokens=4 * 60, seed=0)


def test_answer_position_harvest_equals_the_study_answer_activations(small_run):
    _, final = small_run
    model, _ = load_model(str(final), device="cpu")
    split = load_token_split(SOURCE, None, ctx_len=4, num_val_tokens=32, seed=0)
    batches = split.train_batches(16)
    buffer = ActivationBuffer(model, 0, batches, 2, DistInfo(), torch.device("cpu"), total=2, positions=-2)
    harvested = torch.cat([next(buffer), next(buffer)])
    ids = torch.cat([b for _, b in zip(range(2), split.train_batches(16))])
    assert harvested.shape == (32, CFG.model.d_model)
    torch.testing.assert_close(harvested, answer_activations(model, ids[:, :3], 0))
    # "last" on `a b =` rows is the same position
    last = TrainSaeConfig(positions="last").position_index
    torch.testing.assert_close(residual_at(model, ids[:, :3], 0)[:, last], harvested)


def test_a_scored_position_counts_only_the_prediction_made_there(small_run):
    _, final = small_run
    model, _ = load_model(str(final), device="cpu")
    ids = load_token_split(SOURCE, None, ctx_len=4, num_val_tokens=64, seed=0).val
    total, count = ce_sum_and_count(model, ids, 5, scored_position=-2)
    with torch.no_grad():
        logits = model(ids).logits
    assert count == len(ids)
    assert total / count == pytest.approx(float(F.cross_entropy(logits[:, 2], ids[:, 3])), rel=1e-5)
    everything, n = ce_sum_and_count(model, ids, 5, scored_position=-1)  # the last predicts nothing here
    assert n == 3 * len(ids) and everything / n == pytest.approx(mean_ce(model, ids, 5), rel=1e-6)


def test_a_position_splice_replaces_only_that_position():
    h = torch.randn(3, 4, 5)
    out = at_positions(lambda x: torch.zeros_like(x), -2)(h)
    assert torch.equal(out[:, 2], torch.zeros(3, 5))
    assert torch.equal(out[:, [0, 1, 3]], h[:, [0, 1, 3]])


def _small_args(config: str) -> list[str]:
    return [
        "--config_file", str(REPO / "configs" / config), "--dataset", SOURCE, "--num_train_tokens", "4000",
        "--num_val_tokens", "64", "--batch_size", "16", "--expansion_factor", "2", "--k", "3", "--lr", "3e-3",
    ]  # fmt: skip


def test_the_grok_sae_config_trains_at_the_answer_position_under_the_checkpoint_name(small_run, out_root):
    pre, _ = small_run
    result = train_sae(
        parse_with_config_file(TrainSaeConfig, [*_small_args("grok-pre.json"), "--model", str(pre)])
    )
    key = model_key(str(pre))
    assert key == f"grok-{CFG.run_name}-{pre.name}"
    folder = out_root / "saved_saes" / key / "normal"  # its settings off the defaults named (issue 25)
    assert result.final_dir.parent.parent == folder and result.final_dir.name == "model.layers.0"
    assert result.final_dir.parent.name.startswith("expansion_2_L0_3__n-4000_lr-0.003_")
    sae = load_ours(result.final_dir)
    model, _ = load_model(str(pre), device="cpu")
    split = load_token_split(SOURCE, None, ctx_len=4, num_val_tokens=64, seed=0)
    x = answer_activations(model, split.val[:, :3], 0)
    with torch.no_grad():
        fvu = float((sae.reconstruct(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert fvu == pytest.approx(result.val_fvu, rel=1e-4)  # train_sae.py's FVU is the answer position's
    assert result.val_fvu < 0.9
    # the curve's CE scores the answer only (the prediction at the kept position), as the grok loss does
    with torch.no_grad():
        answer_ce = float(F.cross_entropy(model(split.val).logits[:, 2], split.val[:, 3]))
    assert result.base_ce == pytest.approx(answer_ce, rel=1e-5)
    saved = json.loads((result.final_dir / "config.json").read_text())
    assert saved["positions"] == "-2" and saved["dataset"] == SOURCE


def test_a_crosscoder_across_two_checkpoints_trains_and_loads_back(small_run, out_root):
    pre, final = small_run
    argv = [*_small_args("grok-crosscoder.json"), "--models", str(pre), str(final)]
    cfg = parse_with_config_file(TrainSaeConfig, argv)
    assert cfg.models == [str(pre), str(final)] and cfg.architecture == "crosscoder"
    result = train_sae(cfg)
    keys = [model_key(str(pre)), model_key(str(final))]
    tag = result.final_dir.parent.name  # the settings off the defaults after the tag (issue 25)
    assert tag.startswith(f"crosscoder_models_{keys[0]}+{keys[1]}_expansion_2_L0_3__n-4000_")
    assert result.final_dir.parents[2].name == keys[0]
    coder = load_ours(result.final_dir)
    assert isinstance(coder, Crosscoder)
    assert coder.cfg.sources == keys and coder.cfg.hook_layers == [0, 0]
    # each source's FVU, recomputed from each model's own answer activations on the validation problems
    split = load_token_split(SOURCE, None, ctx_len=4, num_val_tokens=64, seed=0)
    xs = [answer_activations(load_model(str(m), device="cpu")[0], split.val[:, :3], 0) for m in (pre, final)]
    with torch.no_grad():
        x_hat = coder.reconstruct(xs)
    for key, x, rec in zip(keys, xs, x_hat):
        fvu = float((rec - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
        assert fvu == pytest.approx(result.per_source[key]["val_fvu"], rel=1e-4)
        assert fvu < 0.95
    assert result.val_l0 <= 3


def test_models_is_only_for_crosscoders_of_two_or_more():
    with pytest.raises(ValueError, match="--models is for --architecture crosscoder"):
        TrainSaeConfig(models=["a", "b"]).resolved(d_model=8, max_positions=4, n_layers=1)
    with pytest.raises(ValueError, match="two models or more"):
        TrainSaeConfig(models=["a"], architecture="crosscoder").resolved(
            d_model=8, max_positions=4, n_layers=1
        )
    with pytest.raises(ValueError, match="--positions 7 is outside"):
        TrainSaeConfig(positions="7", ctx_len=4).resolved(d_model=8, max_positions=4, n_layers=1)
