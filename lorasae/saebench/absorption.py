"""SAEBench's feature absorption eval, first-letter task (`evals/absorption`), natively.

1. Vocabulary: every tokenizer token that is alphabetic after an optional leading space
   (`get_alpha_tokens`), split 80/20 into train and test words. Prompts are in-context spelling
   examples: "{word} has the first letter: W" lines, then "{word} has the first letter:" for the word;
   activations are read at the word's last token in layer L's residual stream.
2. Ground-truth probe: 26 one-vs-rest logistic probes on the residuals (BCE with positive weights, Adam,
   learning rate decayed exponentially from 1e-2 to 1e-5). A letter counts only if its probe's test F1
   exceeds `min_GT_probe_f1`; if fewer than `min_feats_for_eval` letters do, the model does not represent
   first letters well enough for the eval and it reports that instead of scores (as SAEBench does).
3. k-sparse probing on SAE latents: an L1-penalised multi-probe picks, for each letter, its top-k
   latents (k = 1 … max_k); a balanced logistic regression on those k latents gives an F1 per k. The
   letter's "split" latents are those of the largest k reached while F1 keeps rising by more than
   `f1_jump_threshold`.
4. For each test word the ground-truth probe classifies correctly, absorption is measured on a fresh
   prompt (`FeatureAbsorptionCalculator`): with cos_i = cos(probe, W_dec[i]) and the probe projection
   split into latent contributions a_i·cos_i, the absorption fraction is the share of the projection
   carried by up to 3 non-split latents aligned with the probe (cos ≥ 0.1) instead of the split latents;
   full absorption means the split latents are silent while one aligned latent (cos ≥ 0.025) carries
   ≥ 40 % of the projection.
Scores: per letter, mean absorption fraction and full-absorption rate over the probe's true positives;
reported means and standard deviations over letters.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorasae.model.load import max_positions
from lorasae.saebench.absorption_probes import (
    binary_f1,
    feature_splits,
    k_sparse_columns,
    train_k_sparse_probes,
    train_multi_probe,
)
from lorasae.saebench.absorption_prompts import LETTERS, PromptBatch, alpha_tokens, build_prompts
from lorasae.saebench.activations import collect_residuals, d_sae_of, encode_on_device, sae_encode
from lorasae.saebench.schema import EVAL_TYPE_ABSORPTION, eval_output

EPS = 1e-8

# --- absorption per word -------------------------------------------------------------------------


@dataclass
class WordAbsorption:
    absorption_fraction: float
    is_full_absorption: bool
    probe_projection: float
    top_feature: int


def word_absorption(
    act: Tensor,
    sae_acts: Tensor,
    probe_direction: Tensor,
    cos_sims: Tensor,
    main_feature_ids: list[int],
    full_absorption_probe_cos_sim_threshold: float = 0.025,
    absorption_fraction_probe_cos_sim_threshold: float = 0.1,
    probe_projection_proportion_threshold: float = 0.4,
    absorption_fraction_max_absorbing_latents: int = 3,
    topk_feats: int = 10,
) -> WordAbsorption:
    """SAEBench's `FeatureAbsorptionCalculator.calculate_absorption` for one word.
    act [d]: residual; sae_acts [d_sae]; probe_direction [d] unit; cos_sims [d_sae] = cos(probe, W_dec[i])."""
    act_probe_proj = float(act.float() @ probe_direction.float())
    sae_proj = sae_acts.float() * cos_sims.float()
    main = torch.tensor(main_feature_ids, dtype=torch.long)
    main_proj = float(sae_proj[main].sum()) if len(main) else 0.0

    absorbers = torch.ones_like(sae_proj, dtype=torch.bool)
    absorbers[main] = False
    absorbers &= cos_sims >= absorption_fraction_probe_cos_sim_threshold
    absorbers &= sae_proj > 0
    candidates = sae_proj[absorbers]
    top_total = float(
        candidates.topk(min(absorption_fraction_max_absorbing_latents, candidates.numel())).values.sum()
    )
    proportion = top_total / act_probe_proj if act_probe_proj != 0 else 0.0
    if main_proj >= act_probe_proj or proportion < probe_projection_proportion_threshold:
        fraction = 0.0
    elif main_proj <= 0.0:
        fraction = 1.0
    else:
        absorbed = min(top_total, act_probe_proj - main_proj)
        fraction = float(np.clip(absorbed / (absorbed + main_proj), 0.0, 1.0))

    top = sae_proj.topk(min(topk_feats, sae_proj.numel())).indices
    top0 = int(top[0])
    full = (
        all(abs(float(sae_acts[i])) < EPS for i in main_feature_ids)
        and float(cos_sims[top0]) >= full_absorption_probe_cos_sim_threshold
        and act_probe_proj >= 0
        and act_probe_proj != 0
        and float(sae_proj[top0]) / act_probe_proj >= probe_projection_proportion_threshold
    )
    return WordAbsorption(fraction, bool(full), act_probe_proj, top0)


# --- the eval ------------------------------------------------------------------------------------


@dataclass
class AbsorptionEvalConfig:
    """SAEBench's AbsorptionEvalConfig fields (values for one run), plus the vocabulary cap used here."""

    random_seed: int = 42
    f1_jump_threshold: float = 0.03
    max_k_value: int = 10
    prompt_template: str = "{word} has the first letter:"
    prompt_token_pos: int = -6
    llm_batch_size: int = 32
    llm_dtype: str = "float32"
    k_sparse_probe_l1_decay: float = 0.01
    k_sparse_probe_batch_size: int = 4096
    k_sparse_probe_num_epochs: int = 50
    gt_probe_num_epochs: int = 50
    gt_probe_batch_size: int = 4096
    """SAEBench trains the ground-truth probe in batches of 4096 prompts; a small vocabulary gives it only a
    few steps per epoch, so small runs use smaller batches."""
    min_GT_probe_f1: float = 0.6
    min_feats_for_eval: int = 20
    max_icl_examples: int = 10
    max_vocab: int | None = None
    model_name: str = ""


def run_absorption(
    model: nn.Module,
    tokenizer: Any,
    sae: Any,
    layer: int,
    config: AbsorptionEvalConfig,
    sae_id: str,
    release_id: str | None = None,
) -> dict[str, Any]:
    """Run the eval; SAEBench's output object. When the ground-truth probe is too weak the metrics are
    null and `eval_result_unstructured` says so (`status: "probe_too_weak"`)."""
    rng = random.Random(config.random_seed)
    vocab = alpha_tokens(tokenizer)
    if config.max_vocab is not None and len(vocab) > config.max_vocab:
        vocab = sorted(rng.sample(vocab, config.max_vocab))
    shuffled = rng.sample(vocab, len(vocab))
    split = int(len(shuffled) * 0.8)
    train_words, test_words = shuffled[:split], shuffled[split:]
    max_len = max_positions(model) or 2048
    template, n_icl = config.prompt_template, config.max_icl_examples

    def activations(batch: PromptBatch) -> Tensor:
        if len(batch.words) == 0:
            return torch.zeros(0, 1)
        return collect_residuals(
            model, batch.tokens, layer, config.llm_batch_size, positions=batch.positions
        ).float()

    train = build_prompts(train_words, train_words, tokenizer, rng, template, n_icl, max_len)
    test = build_prompts(test_words, test_words, tokenizer, rng, template, n_icl, max_len)
    x_train, x_test = activations(train), activations(test)
    y_train, y_test = train.labels, test.labels

    def report_too_weak(message: str, probe_f1: dict[str, float]) -> dict[str, Any]:
        keys = (
            "mean_absorption_fraction_score",
            "mean_full_absorption_score",
            "mean_num_split_features",
            "std_dev_absorption_fraction_score",
            "std_dev_full_absorption_score",
            "std_dev_num_split_features",
        )
        return eval_output(
            EVAL_TYPE_ABSORPTION,
            asdict(config),
            {"mean": dict.fromkeys(keys)},
            [],
            sae,
            sae_id,
            release_id,
            unstructured={
                "status": "probe_too_weak",
                "message": message,
                "num_letters_above_min_GT_probe_f1": sum(
                    f > config.min_GT_probe_f1 for f in probe_f1.values()
                ),
                "probe_f1_by_letter": probe_f1,
                "num_train_words": len(train.words),
                "num_test_words": len(test.words),
            },
        )

    if len(train.words) < 26 or len(test.words) < 2:
        return report_too_weak(
            f"Only {len(train.words)} train / {len(test.words)} test words from the tokenizer's {len(vocab)} "
            f"alphabetic tokens make usable first-letter prompts (within {max_len} tokens): too few for the "
            "absorption eval.",
            {},
        )

    gt_probe = train_multi_probe(
        x_train,
        F.one_hot(y_train, 26),
        num_epochs=config.gt_probe_num_epochs,
        batch_size=config.gt_probe_batch_size,
        weight_decay=1e-4,
        seed=config.random_seed,
    )
    with torch.no_grad():
        test_scores = gt_probe(x_test).float()
    present = sorted(set(y_test.tolist()) & set(y_train.tolist()))
    probe_f1 = {
        LETTERS[c]: binary_f1((y_test == c).numpy(), (test_scores[:, c] > 0).numpy())
        for c in range(26)
        if c in present
    }
    good_letters = [c for c in present if probe_f1[LETTERS[c]] > config.min_GT_probe_f1]
    if len(good_letters) < config.min_feats_for_eval:
        return report_too_weak(
            f"Cannot evaluate absorption: the ground-truth first-letter probe reaches F1 > {config.min_GT_probe_f1} "
            f"for only {len(good_letters)} letters (needs {config.min_feats_for_eval}); this model does not "
            "represent first letters linearly at this layer (SAEBench skips such models the same way).",
            probe_f1,
        )

    # the L1 probe reads all latents, encoded batch by batch (SAEBench's default: no precomputed table)
    l1_probe = train_multi_probe(
        x_train,
        F.one_hot(y_train, 26),
        num_epochs=config.k_sparse_probe_num_epochs,
        batch_size=config.k_sparse_probe_batch_size,
        l1_decay=config.k_sparse_probe_l1_decay,
        map_acts=lambda xb: encode_on_device(sae, xb).cpu(),
        probe_dim=d_sae_of(sae),
        seed=config.random_seed,
    )
    ks = list(range(1, config.max_k_value + 1))
    columns = k_sparse_columns(l1_probe, present, config.max_k_value)
    latents_train = sae_encode(sae, x_train, columns=columns)
    latents_test = sae_encode(sae, x_test, columns=columns)
    k_probes = train_k_sparse_probes(l1_probe, latents_train, columns, y_train, present, ks)

    probe_dirs = F.normalize(gt_probe.weights.detach().float(), dim=-1)
    w_dec = sae.W_dec.detach().float().cpu()
    absorption_rng = random.Random(config.random_seed + 1)
    details, fractions, full_rates, n_splits = [], [], [], []
    per_letter: dict[str, Any] = {}
    for c in good_letters:
        letter = LETTERS[c]
        f1_by_k = {
            k: binary_f1((y_test == c).numpy(), (k_probes[k][c].score(latents_test) > 0).numpy()) for k in ks
        }
        feats_by_k = {k: k_probes[k][c].feature_ids.tolist() for k in ks}
        split = feature_splits(f1_by_k, feats_by_k, config.f1_jump_threshold)
        true_pos = [
            w for w, y, s in zip(test.words, y_test.tolist(), test_scores[:, c].tolist()) if y == c and s > 0
        ]
        if not true_pos:
            continue
        fresh = build_prompts(
            true_pos, vocab, tokenizer, absorption_rng, template, n_icl, max_len, prepend_separator=True
        )
        acts = activations(fresh)
        sae_acts = sae_encode(sae, acts)
        cos = F.cosine_similarity(probe_dirs[c][None, :], w_dec, dim=-1)
        words = [
            word_absorption(acts[i], sae_acts[i], probe_dirs[c], cos, split) for i in range(len(fresh.words))
        ]
        n_tp = len(true_pos)
        fraction = sum(w.absorption_fraction for w in words) / n_tp
        n_full = sum(w.is_full_absorption for w in words)
        fractions.append(fraction)
        full_rates.append(n_full / n_tp)
        n_splits.append(len(split))
        details.append(
            {
                "first_letter": letter,
                "mean_absorption_fraction": fraction,
                "full_absorption_rate": n_full / n_tp,
                "num_full_absorption": n_full,
                "num_probe_true_positives": n_tp,
                "num_split_features": len(split),
            }
        )
        per_letter[letter] = {
            "split_feats": split,
            "f1_probe": probe_f1[letter],
            "f1_sparse_sae_by_k": f1_by_k,
        }

    if not details:
        return report_too_weak(
            "No test word was classified correctly by the ground-truth probe for the letters it passes, so "
            "there is nothing to measure absorption on.",
            probe_f1,
        )

    def stdev(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    metrics = {
        "mean": {
            "mean_absorption_fraction_score": statistics.mean(fractions),
            "mean_full_absorption_score": statistics.mean(full_rates),
            "mean_num_split_features": statistics.mean(n_splits),
            "std_dev_absorption_fraction_score": stdev(fractions),
            "std_dev_full_absorption_score": stdev(full_rates),
            "std_dev_num_split_features": stdev(n_splits),
        }
    }
    unstructured = {
        "status": "ok",
        "probe_f1_by_letter": probe_f1,
        "per_letter": per_letter,
        "d_sae": d_sae_of(sae),
    }
    return eval_output(
        EVAL_TYPE_ABSORPTION, asdict(config), metrics, details, sae, sae_id, release_id, unstructured
    )
