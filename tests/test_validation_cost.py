"""Cheap validation for short SAE runs: the curve keeps its points, on the first chunks only, as many
tokens as are trained between two points (at least 2048); the final statistics use every token."""

from __future__ import annotations

import pytest
import torch
from sae_train_helpers import fast_config, write_tiny_world

from lorasae.train.validation import curve_chunks, curve_val_tokens

pytestmark = pytest.mark.usefixtures("one_thread", "fast_names")  # fast runs keep plain names


def test_long_runs_validate_on_every_token_and_short_runs_on_the_tokens_of_one_interval():
    assert curve_val_tokens(1_000_000, 2_000_000_000, 100) == 1_000_000  # the paper's runs: unchanged
    assert curve_val_tokens(8192, 300_000, 100) == 3000  # 300k tokens, 101 points: 3k tokens per point
    assert curve_val_tokens(8192, 30_000, 100) == 2048  # never fewer than 2048
    assert curve_val_tokens(1024, 30_000, 100) == 1024  # never more than there are


def test_curve_chunks_are_the_first_chunks_covering_the_tokens():
    val = torch.arange(40).reshape(10, 4)
    assert torch.equal(curve_chunks(val, 9), val[:3])
    assert torch.equal(curve_chunks(val, 1000), val)


def test_short_run_curve_is_the_spliced_ce_of_the_first_chunks(tmp_path, out_root):
    from lorasae.model.data import load_token_split
    from lorasae.model.load import load_model, special_token_ids
    from lorasae.sae import TopKSAE
    from lorasae.train.sae_trainer import train_sae
    from lorasae.train.validation import spliced_ce

    model_dir, data = write_tiny_world(tmp_path)
    cfg = fast_config(model_dir, data, num_val_tokens=512, curve_val_tokens=96, eval_every_pct=50)
    result = train_sae(cfg)
    assert len(result.val_loss) == 3
    model, tokenizer = load_model(str(model_dir), "cpu", "float32")
    split = load_token_split(str(data), tokenizer, 32, 512, cfg.seed)
    sae = TopKSAE.load(result.final_dir)
    first = split.val[:3]  # 96 tokens = 3 chunks of 32
    expected = spliced_ce(model, sae, 1, first, 4, special_token_ids(tokenizer))
    assert result.val_loss[-1] == pytest.approx(expected, abs=1e-5)
    everything = spliced_ce(model, sae, 1, split.val, 4, special_token_ids(tokenizer))
    assert everything != pytest.approx(expected, abs=1e-6)  # the subset is a real subset
