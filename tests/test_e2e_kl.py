"""The e2e SAE objective on the lean chunked KL: the same value and SAE gradients as the naive full-logit
KL (SPEC §3.1's reduction) for Llama and Gemma-2 (soft-capped logits), without running the full LM head;
the full-logit fallback when the head cannot be verified; a short e2e run still trains."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model

from lorasae.core.losses import kl_next_token
from lorasae.model.hooks import splice
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.train.objectives import e2e_head, e2e_step

pytestmark = pytest.mark.usefixtures("one_thread", "fast_names")  # fast runs keep plain names

LAYER = 1


def _frozen(arch: str) -> torch.nn.Module:
    model = make_tiny_model(arch, d=32)
    with torch.no_grad():  # a random tiny model's logits are within ±0.5: sharpen its distributions
        model.lm_head.weight.mul_(10)
    if arch == "gemma2":  # and the default cap of 30 would hardly bend them: 1.0 makes the tanh matter
        model.config.final_logit_softcapping = 1.0
    model.requires_grad_(False)
    return model


def _sae(seed: int = 0) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SaeConfig(d_in=32, d_sae=128, k=8))
    with torch.no_grad():  # a non-zero decoder bias, so its gradient is exercised too
        sae.b_dec.normal_(0, 0.1)
    return sae


def _naive_loss_and_grads(model, sae, ids) -> tuple[float, list[torch.Tensor]]:
    """The pre-change e2e loss: full [B, T, V] logits of both models, `kl_next_token`, autograd."""
    sae.zero_grad(set_to_none=True)
    with torch.no_grad():
        original = model(input_ids=ids).logits
    with splice(model, {LAYER: lambda h: sae(h.reshape(-1, 32)).x_hat.reshape(h.shape)}):
        spliced = model(input_ids=ids).logits
    loss = kl_next_token(original, spliced)
    loss.backward()
    grads = [p.grad.clone() for p in sae.parameters()]
    sae.zero_grad(set_to_none=True)
    return loss.item(), grads


def _assert_close_rel(mine: list[torch.Tensor], reference: list[torch.Tensor], rel: float) -> None:
    for a, b in zip(mine, reference, strict=True):
        assert b.norm() > 0
        assert (a - b).norm() <= rel * b.norm(), ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_lean_e2e_kl_matches_full_logit_kl_in_value_and_sae_gradients(arch, chunk_size):
    model, sae = _frozen(arch), _sae()
    ids = torch.randint(3, 96, (3, 20))
    if arch == "gemma2":  # the cap is really in play: some raw logit exceeds it
        with torch.no_grad():
            raw = torch.nn.functional.linear(model.model(ids).last_hidden_state, model.lm_head.weight)
        assert raw.abs().max() > model.config.final_logit_softcapping
    reference, ref_grads = _naive_loss_and_grads(model, sae, ids)
    head = e2e_head(model, ids[:1, :8])
    assert head is not None and head.softcap == (1.0 if arch == "gemma2" else None)

    head_calls = []
    hook = model.lm_head.register_forward_hook(lambda *_: head_calls.append(1))
    loss, out, stats = e2e_step(model, sae, ids, LAYER, 0.0, None, head=head, chunk_size=chunk_size)
    hook.remove()
    assert head_calls == []  # no [B, T, V] logits: the head runs only inside the chunked KL
    assert loss.item() == pytest.approx(reference, rel=1e-5)
    assert stats.loss.item() == pytest.approx(reference, rel=1e-5) and stats.tokens == 60
    loss.backward()
    _assert_close_rel([p.grad for p in sae.parameters()], ref_grads, 1e-5)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_e2e_kl_without_a_head_uses_full_logits_and_agrees(arch):
    model, sae = _frozen(arch), _sae(1)
    ids = torch.randint(3, 96, (2, 12))
    reference, ref_grads = _naive_loss_and_grads(model, sae, ids)
    loss, _, _ = e2e_step(model, sae, ids, LAYER, 0.0, None, head=None, chunk_size=5)
    assert loss.item() == pytest.approx(reference, rel=1e-5)
    loss.backward()
    _assert_close_rel([p.grad for p in sae.parameters()], ref_grads, 1e-5)


def test_e2e_head_falls_back_with_a_warning_when_the_logits_are_not_a_linear_head():
    model = _frozen("llama")
    linear = model.lm_head
    model.lm_head = torch.nn.Sequential(linear)  # no longer a plain nn.Linear
    model.get_output_embeddings = lambda: model.lm_head
    with pytest.warns(UserWarning, match="full \\[B, T, V\\] logits"):
        assert e2e_head(model, torch.randint(3, 96, (1, 8))) is None


def test_e2e_head_rejects_a_head_that_does_not_reproduce_the_logits():
    model = _frozen("gemma2")
    ids = torch.randint(3, 96, (1, 8))
    assert e2e_head(model, ids) is not None
    # logits scaled after the head (as some architectures do): head(final hidden) no longer matches
    original_forward = model.forward

    def scaled_forward(*args, **kwargs):
        out = original_forward(*args, **kwargs)
        out.logits = out.logits * 2
        return out

    model.forward = scaled_forward
    with pytest.warns(UserWarning, match="not a plain linear layer"):
        assert e2e_head(model, ids) is None


def test_dataparallel_scale_is_the_local_batch_mean():
    """Per-rank loss = KL summed over the rank's positions / its batch size, as before: two halves of a
    batch average to the whole batch's loss (DDP averages the ranks' gradients)."""
    model, sae = _frozen("llama"), _sae(2)
    ids = torch.randint(3, 96, (4, 10))
    head = e2e_head(model, ids[:1])
    whole = e2e_step(model, sae, ids, LAYER, 0.0, None, head=head)[0].item()
    halves = [e2e_step(model, sae, part, LAYER, 0.0, None, head=head)[0].item() for part in ids.split(2)]
    assert sum(halves) / 2 == pytest.approx(whole, rel=1e-5)


def test_short_e2e_run_trains_on_the_lean_kl(tmp_path, out_root, monkeypatch):
    """60 steps of train_sae --e2e on the tiny random Llama: every step takes the lean path and the KL
    falls. (Its spliced CE is no measure here: the random model is near-uniform, CE ≈ ln 96 either way.)"""
    from sae_train_helpers import fast_config, write_tiny_world

    from lorasae.train import sae_trainer

    losses, heads = [], []

    def recording_step(*args, **kwargs):
        loss, out, stats = e2e_step(*args, **kwargs)
        losses.append(loss.item())
        heads.append(kwargs.get("head"))
        return loss, out, stats

    monkeypatch.setattr(sae_trainer, "e2e_step", recording_step)
    result = sae_trainer.train_sae(fast_config(*write_tiny_world(tmp_path), e2e=True, lr=3e-3))
    assert len(losses) == result.steps == 60
    assert all(head is not None and head.vocab_size == 96 for head in heads)  # the lean path, every step
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
