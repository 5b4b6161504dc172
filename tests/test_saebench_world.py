"""On the built-in world (a small pretrained model and its labelled documents).

Core: an SAE trained for a few hundred Adam steps beats the same SAE before training (a TopKSAE as
constructed: random tied encoder/decoder, b_dec = 0) on explained variance, cosine similarity, CE-loss score
and KL score, by wide margins.

Sparse probing: the trained SAE's top-k latents recover the topic of a document and the profession of a
biography well above chance, about as well as a probe on the model's whole residual stream. Whether they
also beat a random SAE's is not asserted: at test scale that comparison is within noise and flips with
small changes to the world. Measured while writing this (mean SAE top-{1,2,5} accuracy, two data seeds):
d_model 32 / 400k tokens: professions 0.64-0.68 trained vs 0.58-0.63 random in one build, 0.60 vs 0.59-0.64
in another; topics favour random SAEs (0.80-0.86 vs 0.78-0.79: a wide random code hashes tokens, which is all
a bag-of-words topic probe needs). On the real-architecture tiny model (d_model 128, 4 layers, 400k tokens,
SAE from train_sae.py) the trained SAE wins on topics at top-1/top-2 (0.89 / 0.91 vs 0.71-0.87 / 0.79-0.87)
and ties on professions. `TinyWorldConfig.for_tests()` itself (100k tokens) stays at unigram level (val CE
5.17 vs unigram entropy 5.30), so the world built here trains on 400k tokens (about 20 s on one core)."""

from __future__ import annotations

import pytest
import torch

from lorasae.model.load import load_model, num_layers
from lorasae.sae import SaeConfig, TopKSAE, geometric_median
from lorasae.saebench import builtin_datasets
from lorasae.saebench import datasets as data
from lorasae.saebench.activations import collect_residuals
from lorasae.saebench.core import CoreEvalConfig, run_core
from lorasae.saebench.probing import SparseProbingEvalConfig, run_sparse_probing


def _train_sae(x: torch.Tensor, d_sae: int, k: int, layer: int, steps: int) -> TopKSAE:
    """A few hundred Adam steps of FVU on the residuals (the TopK recipe: b_dec at the geometric median,
    unit-norm decoder rows, no gradient along them). The dense reference path (`fast=False`) keeps the test
    independent of the sparse training kernels."""
    torch.manual_seed(0)
    sae = TopKSAE(SaeConfig(d_in=x.shape[1], d_sae=d_sae, k=k, hook_layer=layer), fast=False)
    if steps == 0:
        return sae  # the random SAE: as constructed (random tied encoder/decoder, b_dec = 0)
    sae.b_dec.data = geometric_median(x[:2048])
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = sae(x[torch.randint(0, len(x), (512,), generator=generator)]).fvu
        optimizer.zero_grad()
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        sae.set_decoder_norm_to_unit_norm()
    return sae


@pytest.fixture(scope="module")
def world(world_model):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread beats two contending ones
    model, tokenizer = load_model(str(world_model), "cpu")
    layer = num_layers(model) - 1
    ctx = int(model.config.max_position_embeddings)
    train_tokens = data.token_chunks("builtin", tokenizer, ctx, 200, seed=1)
    x = collect_residuals(model, train_tokens, layer, 32).reshape(-1, model.config.hidden_size).float()
    d = x.shape[1]
    saes = {
        "trained": _train_sae(x, 8 * d, 4, layer, steps=400),
        "random": _train_sae(x, 8 * d, 4, layer, steps=0),
    }
    yield model, tokenizer, layer, ctx, saes
    torch.set_num_threads(before)


def test_trained_sae_beats_random_on_core(world):
    model, tokenizer, layer, ctx, saes = world
    tokens = data.token_chunks("builtin", tokenizer, ctx, 32, seed=2)  # other documents than training
    cfg = CoreEvalConfig(
        batch_size_prompts=8, n_eval_reconstruction_batches=4, n_eval_sparsity_variance_batches=4
    )
    m = {
        name: run_core(model, tokenizer, sae, layer, tokens, cfg, name)["eval_result_metrics"]
        for name, sae in saes.items()
    }
    for category, key in [
        ("reconstruction_quality", "explained_variance"),
        ("reconstruction_quality", "cossim"),
        ("model_performance_preservation", "ce_loss_score"),
        ("model_behavior_preservation", "kl_div_score"),
    ]:
        assert m["trained"][category][key] > m["random"][category][key], (category, key, m)
    assert m["trained"]["reconstruction_quality"]["explained_variance"] > 0.8
    assert m["trained"]["sparsity"]["l0"] == pytest.approx(4.0)
    ce = m["trained"]["model_performance_preservation"]
    assert ce["ce_loss_without_sae"] <= ce["ce_loss_with_sae"] < ce["ce_loss_with_ablation"]


def test_trained_sae_probes_find_topics_and_professions(world):
    model, tokenizer, layer, ctx, saes = world
    datasets = builtin_datasets.builtin_probing_datasets(200, 100, seed=0)
    cfg = SparseProbingEvalConfig(
        probe_train_set_size=200,
        probe_test_set_size=100,
        context_length=ctx,
        k_values=[1, 2, 5],
        llm_batch_size=32,
    )
    out = run_sparse_probing(model, tokenizer, saes["trained"], layer, datasets, cfg, "trained")
    for detail in out["eval_result_details"]:
        name = detail["dataset_name"]
        assert detail["llm_test_accuracy"] > 0.55, detail  # the model itself separates the classes
        assert detail["sae_top_5_test_accuracy"] > 0.55, detail  # so do five SAE latents...
        assert detail["sae_top_5_test_accuracy"] > detail["llm_test_accuracy"] - 0.1, (
            detail
        )  # ...nearly as well
        if name.startswith("builtin/domains"):
            assert detail["sae_top_1_test_accuracy"] > 0.6, detail  # one latent already marks a topic
