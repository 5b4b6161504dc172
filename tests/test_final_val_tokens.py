"""`--final_val_tokens` (issue 30): the final FVU, L0 and never-active statistics on the first validation
chunks only, training unchanged (it still starts after --num_val_tokens), and Dark Matter's error SAEs
scored on a bounded number of tokens with every other number bit-identical."""

from __future__ import annotations

import pytest
import torch
from sae_train_helpers import fast_config, write_tiny_world

from lorasae.sae import SaeConfig, TopKSAE

pytestmark = pytest.mark.usefixtures("one_thread", "fast_names")  # fast runs keep plain names


def _manual_fvu(model, sae: TopKSAE, chunks: torch.Tensor, layer: int) -> float:
    """Σ‖x̂ − x‖² / Σ‖x − mean‖² over every position of `chunks`, in float64."""
    from lorasae.model.hooks import residual_at

    with torch.no_grad():
        x = residual_at(model, chunks, layer).reshape(-1, sae.cfg.d_in).double()
        x_hat = sae.reconstruct(x.float()).double()
    return float((x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def test_final_val_tokens_scores_the_first_chunks_and_training_is_unchanged(tmp_path, out_root, capsys):
    from lorasae.model.data import load_token_split
    from lorasae.model.load import load_model
    from lorasae.train.sae_trainer import train_sae

    model_dir, data = write_tiny_world(tmp_path)
    full = train_sae(fast_config(model_dir, data))  # 4 validation chunks of 32 tokens
    full_state = TopKSAE.load(full.final_dir).state_dict()
    capped = train_sae(fast_config(model_dir, data, final_val_tokens=40, overwrite=True))  # 2 chunks
    assert "val FVU" in capsys.readouterr().out
    for name, value in TopKSAE.load(capped.final_dir).state_dict().items():
        assert torch.equal(value, full_state[name]), name
    assert capped.val_loss == full.val_loss and capped.train_metrics == full.train_metrics
    model, tokenizer = load_model(str(model_dir), device="cpu")
    val = load_token_split(str(data), tokenizer, 32, 128, 42).val
    sae = TopKSAE.load(capped.final_dir)
    assert len(val) == 4
    assert full.val_fvu == pytest.approx(_manual_fvu(model, sae, val, 1), rel=1e-5)
    assert capped.val_fvu == pytest.approx(_manual_fvu(model, sae, val[:2], 1), rel=1e-5)
    assert capped.val_fvu != pytest.approx(full.val_fvu, rel=1e-3)


def test_the_summary_line_states_the_final_statistics_tokens(tmp_path, out_root, capsys):
    from lorasae.train.sae_trainer import train_sae

    model_dir, data = write_tiny_world(tmp_path)
    train_sae(fast_config(model_dir, data, num_train_tokens=640, final_val_tokens=64))
    out = capsys.readouterr().out
    assert "L0" in out and "on the first 64 val tokens" in out


def test_a_capped_run_is_not_the_same_finished_run_as_the_uncapped_one(tmp_path, out_root):
    """The run identity names --final_val_tokens only when given: existing runs keep their identity, and
    a rerun with another cap is not skipped with the other cap's numbers."""
    from lorasae.train.sae_record import sae_run_identity

    model_dir, data = write_tiny_world(tmp_path)
    default = sae_run_identity(fast_config(model_dir, data))
    capped = sae_run_identity(fast_config(model_dir, data, final_val_tokens=64))
    assert "final_val_tokens" not in default
    assert capped == {**default, "final_val_tokens": 64}


def test_final_val_tokens_below_one_is_refused():
    from lorasae.train.config import TrainSaeConfig

    with pytest.raises(ValueError, match="--final_val_tokens must be ≥ 1"):
        TrainSaeConfig(final_val_tokens=0).validate(32)


def test_error_saes_score_val_fvu_on_bounded_tokens_and_every_other_number_is_unchanged(
    small_world, out_root
):
    """Before (val_fvu over the whole stream up to the region's end) and after (the first VAL_TOKENS):
    the same weights, train and test FVU bit for bit; only val_fvu's tokens differ."""
    from lorasae.darkmatter.error_saes import VAL_TOKENS, train_error_saes
    from lorasae.darkmatter.info import SAEInfo
    from lorasae.darkmatter.linear import fit_linear
    from lorasae.train.modification import save_modification_file

    torch.manual_seed(0)
    given = TopKSAE(SaeConfig(d_in=32, d_sae=64, k=4)).save(out_root / "given_sae")
    W, b = torch.randn(32, 32) * 0.1, torch.randn(32) * 0.1
    map_file = save_modification_file(
        out_root / "map.safetensors", W, b, str(given), 1, small_world.name, True
    )
    x = torch.randn(200, 32)
    info = SAEInfo.from_arrays(x, 0.7 * x + 0.1 * torch.randn(200, 32), layer=1, ctx_len=64, num_chunks=2)
    lin = fit_linear(x, 0.3 * x)
    after = 160  # 10,240 tokens before the error SAEs' training chunks: more than VAL_TOKENS
    runs = {}
    for label, val_tokens in (("before", None), ("after", VAL_TOKENS)):
        results = train_error_saes(str(small_world), map_file, info, lin, [1], 4, 5, 0.5, "builtin",
                                   after_chunks=after, val_tokens=val_tokens)  # fmt: skip
        runs[label] = [(r, TopKSAE.load(r.folder).state_dict()) for r in results]
    for (old, old_state), (new, new_state) in zip(runs["before"], runs["after"], strict=True):
        assert (old.target, old.width, old.folder) == (new.target, new.width, new.folder)
        assert all(torch.equal(old_state[name], new_state[name]) for name in old_state)
        assert (old.train_fvu, old.test_fvu) == (new.train_fvu, new.test_fvu)
        assert (old.val_tokens, new.val_tokens) == (after * 64, VAL_TOKENS)
        assert new.val_fvu != old.val_fvu and 0 < new.val_fvu < 2


def test_the_report_names_the_val_fvu_tokens_and_reads_older_results():
    from lorasae.darkmatter.report import _val_label

    assert _val_label([{"val_tokens": 8192}, {"val_tokens": 8192}]) == "val FVU (first 8,192 tokens)"
    assert _val_label([{"val_fvu": 0.5}]) == "val FVU (stream to the region's end)"  # written before
