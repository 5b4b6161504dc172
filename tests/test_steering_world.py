"""Steering on the built-in world: steering along a science direction makes science text likelier
relative to the other domains' text, as the evaluation measures it end to end (positives file, tuning
sweep and record, test split, normalised Δs).

The concept direction. Latents of SAEs trained in seconds on the test-sized world do not steer
reliably (measured: the sign of Δpositives − Δnegatives changes from latent to latent and with the
mining settings), so this test does not use one. Its direction is supervised: the residual direction that
the (tied) unembedding maps onto "science tokens minus all tokens", W_Uᵀ(p_science − p_all) with p the
unigram distributions of fresh science / all-domain documents, put in as the decoder row of one latent
of an otherwise random SAE, and steered with the paper's multiplicative edit at the last layer."""

from __future__ import annotations

import torch

from lorasae.core.atomic import atomic_write_json
from lorasae.model.load import load_model, num_layers
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.steering.alpha_sweep import tune_alpha
from lorasae.steering.args import SteeringArgs, positives_path
from lorasae.steering.context import SteeringContext
from lorasae.steering.example_sources import split_snippets
from lorasae.steering.final_eval import run_steering_eval
from lorasae.steering.latent import resolve_latent
from lorasae.steering.loglik import encode_texts
from lorasae.steering.negatives import builtin_documents
from lorasae.world import world_seed as model_world_seed
from lorasae.world.corpus import DOMAINS

LATENT = 3


def science_direction(model, tokenizer, world_seed: int) -> torch.Tensor:
    vocab = model.get_output_embeddings().weight.shape[0]

    def unigram(texts: list[str]) -> torch.Tensor:
        counts = torch.zeros(vocab)
        for seq in encode_texts(tokenizer, texts, 128):
            counts += torch.bincount(torch.tensor(seq[1:]), minlength=vocab).float()
        return counts / counts.sum()

    p_science = unigram(builtin_documents("science", 1000, 1060, world_seed))
    p_all = unigram([t for d in DOMAINS for t in builtin_documents(d, 1000, 1020, world_seed)])
    direction = model.get_output_embeddings().weight.detach().T @ (p_science - p_all)
    return direction / direction.norm()


def test_steering_along_a_science_direction_favours_science(world_model, out_root, capsys):
    model, tokenizer = load_model(str(world_model), "cpu")
    world_seed = model_world_seed(model)
    layer = num_layers(model) - 1
    torch.manual_seed(0)
    sae = TopKSAE(SaeConfig(d_in=model.config.hidden_size, d_sae=8, k=1, hook_layer=layer))
    with torch.no_grad():
        sae.W_dec[LATENT] = science_direction(model, tokenizer, world_seed)
    ctx = SteeringContext(model, tokenizer, sae, layer, "small-world", "science-direction")
    assert resolve_latent(ctx, LATENT) == LATENT

    # positives: science sentences of fresh documents, in the file make_positive_examples.py writes
    positives = [s for t in builtin_documents("science", 400, 440, world_seed) for s in split_snippets(t)]
    atomic_write_json(positives_path(LATENT), {"examples": positives[:80], "source": "test"})
    args = SteeringArgs(model=str(world_model), num_negatives=30, batch_size=32, max_length=48)

    record = tune_alpha(ctx, args)  # the multiplicative grid; base model only (no adapter here)
    tuning = record["modes"]["multiplicative"]["splits"]["tuning"]
    chosen = tuning["chosen_alpha"]
    best = next(e for e in tuning["evaluations"] if e["alpha"] == chosen)
    assert best["worst_negative"] >= -5.0  # within the side-effect budget

    results = run_steering_eval(ctx, args, per_set_histograms=False)  # alpha from the record
    assert results["alpha"] == chosen and results["sets"]["positive"] >= 30
    summary = results["summary"]
    positive = summary["positive"]["base"]["delta_mean"]
    negatives = {name: entry["base"]["delta_mean"] for name, entry in summary.items() if name != "positive"}
    with capsys.disabled():
        print(
            f"\nsmall world, science direction, layer {layer}, multiplicative alpha={chosen:g}: "
            f"Δ positives {positive:+.2f}, negatives {negatives['negative (all)']:+.2f} "
            f"({', '.join(f'{k} {v:+.2f}' for k, v in negatives.items() if k != 'negative (all)')})"
        )
    assert positive > negatives["negative (all)"] + 0.5
    assert all(positive > value for value in negatives.values())
