"""SAEBench's core eval splices the SAE the way the rest of the project does (`hooks.splice` +
`sae.splice.splice_fn`): its CE with the SAE is `eval_ce.mean_ce` with the trainers' splice, and its
`exclude_special_tokens_from_reconstruction` option keeps the BOS/EOS/PAD positions' activations."""

from __future__ import annotations

import pytest
import torch
from conftest import make_char_tokenizer, make_tiny_model

from lorasae.model.ce import mean_ce
from lorasae.model.load import special_token_ids
from lorasae.sae import SaeConfig, TopKSAE, splice_fn
from lorasae.saebench.core import CoreEvalConfig, reconstruction_metrics, run_core

pytestmark = pytest.mark.usefixtures("one_thread")

LAYER = 1
B, T = 4, 16


def _sae(skip_special_tokens: bool = False) -> TopKSAE:
    torch.manual_seed(1)
    return TopKSAE(SaeConfig(32, 64, 4, hook_layer=LAYER, skip_special_tokens=skip_special_tokens))


def _ordinary_tokens(n: int) -> torch.Tensor:
    """Ids 4… of the character tokenizer only: no BOS/EOS/PAD, so the core eval averages every position."""
    return torch.randint(4, 96, (n, T), generator=torch.Generator().manual_seed(0))


def test_core_ce_with_sae_is_mean_ce_with_the_trainers_splice():
    model, tokenizer, sae = make_tiny_model("llama"), make_char_tokenizer(), _sae()
    tokens = _ordinary_tokens(2 * B)
    cfg = CoreEvalConfig(
        batch_size_prompts=B, n_eval_reconstruction_batches=2, n_eval_sparsity_variance_batches=1
    )
    m = run_core(model, tokenizer, sae, LAYER, tokens, cfg, "sae")["eval_result_metrics"]
    ce = m["model_performance_preservation"]
    special = special_token_ids(tokenizer)
    spliced = mean_ce(model, tokens, B, lambda ids: {LAYER: splice_fn(sae, ids, special)})
    clean = mean_ce(model, tokens, B)
    assert ce["ce_loss_with_sae"] == pytest.approx(spliced, rel=1e-5)
    assert ce["ce_loss_without_sae"] == pytest.approx(clean, rel=1e-5)
    # the random SAE really is spliced in (a random model: CE moves, not necessarily up)
    assert abs(ce["ce_loss_with_sae"] - ce["ce_loss_without_sae"]) > 1e-3


def test_excluding_special_tokens_splices_like_a_gemma_scope_sae():
    model, tokenizer = make_tiny_model("llama"), make_char_tokenizer()
    tokens = _ordinary_tokens(B)
    tokens[:, 0] = tokenizer.bos_token_id
    tokens[:, -3:] = tokenizer.pad_token_id
    special = special_token_ids(tokenizer)
    plain, gemma_like = _sae(), _sae(skip_special_tokens=True)  # the same weights
    excluded = reconstruction_metrics(model, tokens, plain, LAYER, special, exclude_special=True)
    everywhere = reconstruction_metrics(model, tokens, gemma_like, LAYER, special, exclude_special=False)
    # a Gemma Scope SAE in the trainers' splice keeps its special positions; the option does that for any SAE
    keeps = mean_ce(model, tokens, B, lambda ids: {LAYER: splice_fn(gemma_like, ids, special)})
    assert float(excluded["ce_loss_with_sae"].mean()) == pytest.approx(keeps, rel=1e-5)
    # without the option even a Gemma Scope SAE reconstructs every position (SAEBench's behaviour)
    replaces = mean_ce(model, tokens, B, {LAYER: splice_fn(plain)})
    assert float(everywhere["ce_loss_with_sae"].mean()) == pytest.approx(replaces, rel=1e-5)
    assert abs(keeps - replaces) > 1e-4


def test_splice_fn_skip_special_overrides_the_saes_own_flag():
    ids = torch.tensor([[1, 5, 6, 0], [1, 7, 2, 0]])
    h = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(2))
    plain, gemma_like = _sae(), _sae(skip_special_tokens=True)
    with torch.no_grad():
        recon = plain.decode(plain.encode(h))
    special = (ids == 0) | (ids == 1) | (ids == 2)
    expected = torch.where(special[..., None], h, recon)
    with torch.no_grad():
        torch.testing.assert_close(splice_fn(plain, ids, [0, 1, 2], skip_special=True)(h), expected)
        torch.testing.assert_close(splice_fn(gemma_like, ids, [0, 1, 2])(h), expected)
        torch.testing.assert_close(splice_fn(gemma_like, ids, [0, 1, 2], skip_special=False)(h), recon)
        torch.testing.assert_close(splice_fn(plain, ids, [0, 1, 2])(h), recon)
