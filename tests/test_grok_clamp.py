"""Clamping SAE latents through the splice: the edit against a hand-written formula, its effect on the
model and its gradients, and the clamp study's conditions on a small grokking run."""

from __future__ import annotations

import pytest
import torch
from grok_helpers import small_grok_config

from lorasae.core import grok_paths
from lorasae.grok.experiments import clamp_fn, clamp_study, differing_latents
from lorasae.grok_world.model import GrokModelConfig, build_model, last_logits
from lorasae.grok_world.tasks import ModularTask
from lorasae.grok_world.train import train_grok
from lorasae.model.hooks import splice
from lorasae.sae import SaeConfig, TopKSAE


def _sae(d: int = 16, m: int = 48, k: int = 4, seed: int = 0) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SaeConfig(d_in=d, d_sae=m, k=k))
    with torch.no_grad():
        sae.encoder.bias.normal_(0.0, 0.1)
        sae.b_dec.normal_(0.0, 0.1)
    return sae.requires_grad_(False)


def test_clamp_fn_edits_only_the_answer_position_by_the_clamped_latents_decoder_rows():
    sae = _sae()
    h = torch.randn(5, 3, 16)
    latents = torch.tensor([1, 7, 30])
    out = clamp_fn(sae, latents, value=0.5)(h)
    torch.testing.assert_close(out[:, :2], h[:, :2])
    pre = (h[:, -1] - sae.b_dec) @ sae.W_enc + sae.b_enc  # dense TopK encode by hand
    top = pre.topk(4, dim=-1)
    z = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    expected = h[:, -1] + (0.5 - z[:, latents]) @ sae.W_dec[latents]
    torch.testing.assert_close(out[:, -1], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(clamp_fn(sae, torch.tensor([], dtype=torch.long))(h), h)


def test_clamping_through_the_splice_changes_the_answers_and_lets_gradients_reach_the_model():
    task = ModularTask(prime=11, train_frac=0.5)
    model = build_model(task, GrokModelConfig(d_model=16, d_ff=32, n_heads=2))
    ids, labels = task.datasets()["train"]
    sae = _sae()
    with torch.no_grad():
        plain = last_logits(model, ids)
    with torch.no_grad():
        z = sae.encode(model(input_ids=ids, output_hidden_states=True).hidden_states[1][:, -1])
    active = z.sum(0).argsort(descending=True)[:6]  # latents that do fire on these problems
    with splice(model, {0: clamp_fn(sae, active)}):
        clamped = last_logits(model, ids)
        torch.nn.functional.cross_entropy(clamped, labels).backward()
    assert (clamped.detach() - plain).abs().max() > 1e-4
    grad = model.model.layers[0].mlp.down_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in sae.parameters())


def test_differing_latents_rank_by_post_minus_pre_mean_activation():
    sae = _sae()
    pre, post = torch.randn(50, 16), torch.randn(50, 16) + 1.0
    order, score = differing_latents(sae, pre, post)
    torch.testing.assert_close(score, sae.encode(post).mean(0) - sae.encode(pre).mean(0))
    assert (score[order[:-1]] >= score[order[1:]]).all()


CFG = small_grok_config(d_model=16, d_ff=32, max_steps=40)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("grok_clamp")
    return base, train_grok(CFG, base, progress=False)


def test_clamp_study_runs_targeted_random_and_baseline_conditions(small_run):
    base, result = small_run
    sae = _sae()
    targeted = torch.tensor([0, 1, 2])
    candidates = torch.arange(10, 30)
    runs = clamp_study(
        CFG, grok_paths.grok_checkpoint_dir(CFG.run_name, 20, base), sae, 0, targeted, candidates, 40, seeds=2
    )
    assert [r.condition for r in runs] == ["none", "targeted", "random", "random"]
    assert runs[1].latents == [0, 1, 2]
    for r in runs[2:]:
        assert len(r.latents) == 3 and set(r.latents) <= set(candidates.tolist())
    assert runs[2].latents != runs[3].latents  # one draw per seed
    assert runs[0].curves.test_acc == result.curves.test_acc[2:]  # no clamp: the run itself
    assert all(r.curves.step == [20, 30, 40] for r in runs)
