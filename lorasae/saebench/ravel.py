"""SAEBench's RAVEL (`evals/ravel/main.py`, `mdbm.py`, `intervention.py`), natively.

RAVEL asks whether an SAE separates an entity's attributes. For each attribute A of an entity class:
- Prompts (one attribute of one entity each) are filtered to those the model completes correctly (its
  greedy `n_generated_tokens`-token continuation passes `ravel_completion.evaluate_completion`).
- Cause pairs: a base and a source prompt of A with different values; the target is the source's value.
  Isolation pairs: base and source prompts of another attribute B (different values); the target is the
  base's own value. As many isolation pairs as cause pairs; shuffled together; `train_test_split` trains.
- MDBM: a binary mask over the SAE's latents, trained with Adam (`learning_rate`, `num_epochs`) as
  sigmoid(logits / T) with T annealed log-linearly from 1 to 1e-4 over the steps. At the base prompt's
  last entity token (residual after the SAE's layer) the latents become (1 − m) f(base) + m f(source),
  decoded without the SAE error (SAEBench's `add_error=False`). Loss: cross-entropy of the next token
  against the target's first token as the model itself predicts it.
- Evaluation on the held-out pairs with the hard mask (logits > 0): greedy generation; a pair counts for
  isolation when its target token equals the base's own first token (always so for isolation pairs),
  else for cause; score = fraction whose generation gives the target value (SAEBench's completion check
  with all its special cases, `ravel_completion.evaluate_completion`, on the base prompt's text).
  disentanglement = (cause + isolation) / 2, averaged over the attributes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from lorasae.model.hooks import residual_at, splice
from lorasae.saebench.activations import _model_device, d_sae_of, encode_on_device, sae_device_dtype
from lorasae.saebench.ravel_completion import evaluate_completion
from lorasae.saebench.schema import EVAL_TYPE_RAVEL, eval_output
from lorasae.saebench.world_tasks import RAVEL_ENTITY_CLASS, RavelPrompt

SpliceFn = Callable[[Tensor], Tensor]


@dataclass
class RAVELEvalConfig:
    """SAEBench's RAVELEvalConfig fields that apply here (values for one run)."""

    entity_attribute_selection: dict[str, list[str]] = field(
        default_factory=lambda: {RAVEL_ENTITY_CLASS: ["capital", "language", "continent"]}
    )
    top_n_entities: int = 500
    num_pairs_per_attribute: int = 5000
    train_test_split: float = 0.7
    model_name: str = ""
    llm_dtype: str = "float32"
    llm_batch_size: int = 32
    learning_rate: float = 1e-3
    num_epochs: int = 2
    n_generated_tokens: int = 6
    random_seed: int = 42
    min_known_prompts: int = 4
    """Not a SAEBench field: attributes with fewer known prompts (or fewer than two known values) are skipped."""


# --- generation and the intervention ------------------------------------------------------------


def _by_length(rows: Sequence[tuple[int, ...]], batch_size: int) -> list[list[int]]:
    """Indices of `rows` grouped into batches of equal length (no padding needed)."""
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(rows):
        groups.setdefault(len(ids), []).append(i)
    return [g[j : j + batch_size] for g in groups.values() for j in range(0, len(g), batch_size)]


@torch.no_grad()
def greedy_continuations(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[tuple[int, ...]],
    n_tokens: int,
    batch_size: int,
    intervention: Callable[[list[int]], dict[int, SpliceFn]] | None = None,
) -> tuple[list[str], list[int]]:
    """Greedy continuations of `prompts` (decoded text, first token id). `intervention(batch indices)` gives
    the splice functions of a batch; the prompt's positions keep their index as the sequence grows, and a
    causal model's earlier positions do not depend on later ones, so re-running the grown sequence with the
    same intervention equals generating with a KV cache of the intervened prompt."""
    device = _model_device(model)
    texts: list[str] = [""] * len(prompts)
    firsts: list[int] = [0] * len(prompts)
    for batch in _by_length(prompts, batch_size):
        ids = torch.tensor([prompts[i] for i in batch], device=device)
        start = ids.shape[1]
        fns = intervention(batch) if intervention else {}
        with splice(model, fns):
            for _ in range(n_tokens):
                logits = model(input_ids=ids, use_cache=False).logits[:, -1]
                ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
        for row, i in enumerate(batch):
            firsts[i] = int(ids[row, start])
            texts[i] = tokenizer.decode(ids[row, start:].tolist())
    return texts, firsts


def filter_known(
    model: nn.Module, tokenizer: Any, prompts: list[RavelPrompt], config: RAVELEvalConfig
) -> list[tuple[RavelPrompt, int]]:
    """The prompts the model completes correctly, of the `top_n_entities` entities with most of them, each
    with its first generated token id."""
    texts, firsts = greedy_continuations(
        model, tokenizer, [p.ids for p in prompts], config.n_generated_tokens, config.llm_batch_size
    )
    known = [
        (p, t) for p, text, t in zip(prompts, texts, firsts) if evaluate_completion(p.text, p.label, text)
    ]
    counts: dict[str, int] = {}
    for p, _ in known:
        counts[p.entity] = counts.get(p.entity, 0) + 1
    top = set(sorted(counts, key=lambda e: (-counts[e], e))[: config.top_n_entities])
    return [(p, t) for p, t in known if p.entity in top]


def mask_values(logits: Tensor, temperature: float | None) -> Tensor:
    """sigmoid(logits / T) while training; the hard mask (logits > 0) when `temperature` is None."""
    if temperature is None:
        return (logits > 0).to(logits.dtype)
    return torch.sigmoid(logits / temperature)


def patch_fn(sae: Any, source_latents: Tensor, positions: Tensor, mask: Tensor) -> SpliceFn:
    """h ↦ h with row `positions[b]` of each sequence b replaced by decode((1 − m) f(h) + m f_source[b]).
    Gradients reach `mask` (and nothing else: the encodings are constants, as in SAEBench)."""
    device, dtype = sae_device_dtype(sae)

    def fn(h: Tensor) -> Tensor:
        rows = torch.arange(h.shape[0], device=h.device)
        pos = positions.to(h.device)
        base = encode_on_device(sae, h[rows, pos].detach())
        m = mask.to(device)
        mixed = (1 - m) * base + m * source_latents.to(device)
        new = sae.decode(mixed.to(dtype)).to(h.dtype).to(h.device)
        out = h.clone()
        out[rows, pos] = new
        return out

    return fn


# --- pairs, training, scoring ----------------------------------------------------------------------


@dataclass
class Pair:
    base: int  # index into the known prompts
    source: int
    target_token: int
    label: str


def _pairs(
    prompts: list[RavelPrompt],
    attribute: str,
    n: int,
    rng: random.Random,
    firsts: dict[int, int],
    cause: bool,
):
    """SAEBench's `get_prompt_pairs`: up to n base prompts of `attribute`, each with a random source prompt
    of the same attribute and a different value; target = source's (cause) or base's (isolation) value."""
    pool = [i for i, p in enumerate(prompts) if p.attribute == attribute]
    bases = pool if len(pool) <= n else rng.sample(pool, n)
    pairs = []
    for b in bases:
        others = [s for s in pool if prompts[s].label != prompts[b].label]
        if not others:
            continue
        s = rng.choice(others)
        t = s if cause else b
        pairs.append(Pair(b, s, firsts[t], prompts[t].label))
    return pairs


def _source_latents(
    model: nn.Module, sae: Any, prompts: list[RavelPrompt], layer: int, batch_size: int
) -> Tensor:
    """f(residual at each prompt's last entity token) [N, d_sae], on the CPU."""
    device = _model_device(model)
    out = torch.zeros(len(prompts), d_sae_of(sae))
    with torch.no_grad():
        for batch in _by_length([p.ids for p in prompts], batch_size):
            ids = torch.tensor([prompts[i].ids for i in batch], device=device)
            h = residual_at(model, ids, layer)
            pos = torch.tensor([prompts[i].entity_pos for i in batch], device=device)
            out[batch] = encode_on_device(sae, h[torch.arange(len(batch), device=device), pos]).cpu()
    return out


def _batches(pairs: list[Pair], prompts: list[RavelPrompt], batch_size: int) -> list[list[Pair]]:
    return [[pairs[i] for i in b] for b in _by_length([prompts[p.base].ids for p in pairs], batch_size)]


def train_mask(
    model: nn.Module, sae: Any, layer: int, prompts: list[RavelPrompt], latents: Tensor, train: list[Pair],
    config: RAVELEvalConfig,
) -> Tensor:  # fmt: skip
    """SAEBench's `train_mdbm`: mask logits [d_sae] after `num_epochs` of Adam on the cross-entropy."""
    device = _model_device(model)
    logits = torch.zeros(d_sae_of(sae), device=device, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=config.learning_rate)
    batches = _batches(train, prompts, config.llm_batch_size)
    steps = max(config.num_epochs * len(batches), 1)
    temperatures = torch.logspace(0, -4, steps).tolist()
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        for step in tqdm(range(steps), desc="RAVEL mask", leave=False, disable=steps < 20):
            batch = batches[step % len(batches)]
            ids = torch.tensor([prompts[p.base].ids for p in batch], device=device)
            pos = torch.tensor([prompts[p.base].entity_pos for p in batch])
            src = latents[[p.source for p in batch]]
            fn = patch_fn(sae, src, pos, mask_values(logits, temperatures[step]))
            with splice(model, {layer: fn}):
                out = model(input_ids=ids, use_cache=False).logits[:, -1].float()
            target = torch.tensor([p.target_token for p in batch], device=device)
            loss = F.cross_entropy(out, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        for p in params:
            p.requires_grad_(True)
    return logits.detach()


def score_pairs(
    model: nn.Module, tokenizer: Any, sae: Any, layer: int, prompts: list[RavelPrompt], latents: Tensor,
    pairs: list[Pair], firsts: dict[int, int], mask_logits: Tensor, config: RAVELEvalConfig,
) -> tuple[float, float, int, int]:  # fmt: skip
    """(cause score, isolation score, cause count, isolation count) with the hard mask."""
    mask = mask_values(mask_logits, None)

    def intervention(batch: list[int]) -> dict[int, SpliceFn]:
        pos = torch.tensor([prompts[pairs[i].base].entity_pos for i in batch])
        return {layer: patch_fn(sae, latents[[pairs[i].source for i in batch]], pos, mask)}

    texts, _ = greedy_continuations(
        model, tokenizer, [prompts[p.base].ids for p in pairs], config.n_generated_tokens,
        config.llm_batch_size, intervention,
    )  # fmt: skip
    cause, iso = [], []
    for p, text in zip(pairs, texts):
        ok = evaluate_completion(prompts[p.base].text, p.label, text)  # the base prompt, as SAEBench
        (iso if p.target_token == firsts[p.base] else cause).append(ok)
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return mean(cause), mean(iso), len(cause), len(iso)


def run_attribute(
    model: nn.Module, tokenizer: Any, sae: Any, layer: int, prompts: list[RavelPrompt], firsts: dict[int, int],
    latents: Tensor, attribute: str, config: RAVELEvalConfig,
) -> dict[str, Any]:  # fmt: skip
    """SAEBench's `run_eval_single_cause_attribute`."""
    rng = random.Random(config.random_seed)
    n = config.num_pairs_per_attribute
    cause = _pairs(prompts, attribute, n, rng, firsts, cause=True)
    iso = [
        q
        for other in sorted({p.attribute for p in prompts} - {attribute})
        for q in _pairs(prompts, other, n, rng, firsts, False)
    ]
    rng.shuffle(iso)
    pairs = cause + iso[: len(cause)]
    rng.shuffle(pairs)
    split = int(len(pairs) * config.train_test_split)
    train, val = pairs[:split], pairs[split:]
    if not train or not val:
        return {"status": "too_few_pairs", "n_pairs": len(pairs)}
    torch.manual_seed(config.random_seed)
    mask_logits = train_mask(model, sae, layer, prompts, latents, train, config)
    c, i, n_c, n_i = score_pairs(
        model, tokenizer, sae, layer, prompts, latents, val, firsts, mask_logits, config
    )
    return {
        "cause_score": c,
        "isolation_score": i,
        "disentangle_score": (c + i) / 2,
        "n_train_pairs": len(train),
        "n_cause_eval": n_c,
        "n_isolation_eval": n_i,
        "n_latents_in_mask": int((mask_logits > 0).sum()),
    }


def _nanmean(values: list[float]) -> float:
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def run_ravel(
    model: nn.Module,
    tokenizer: Any,
    sae: Any,
    layer: int,
    prompts_by_class: dict[str, list[RavelPrompt]],
    config: RAVELEvalConfig,
    sae_id: str,
    release_id: str | None = None,
) -> dict[str, Any]:
    """RAVEL over `prompts_by_class` {entity class: candidate prompts} (filtered here to known ones)."""
    per_class: dict[str, Any] = {}
    class_scores: dict[str, dict[str, float]] = {}
    for entity_class, candidates in prompts_by_class.items():
        wanted = config.entity_attribute_selection.get(
            entity_class, sorted({p.attribute for p in candidates})
        )
        candidates = [p for p in candidates if p.attribute in wanted]
        known = filter_known(model, tokenizer, candidates, config)
        usable = [
            a for a in wanted
            if sum(p.attribute == a for p, _ in known) >= config.min_known_prompts
            and len({p.label for p, _ in known if p.attribute == a}) >= 2
        ]  # fmt: skip
        summary: dict[str, Any] = {
            "n_candidate_prompts": len(candidates),
            "n_known_prompts": len(known),
            "known_per_attribute": {a: sum(p.attribute == a for p, _ in known) for a in wanted},
        }
        if len(usable) < 2:
            summary["status"] = "too_few_known_prompts"
            per_class[f"{entity_class}_results"] = summary
            continue
        known = [(p, t) for p, t in known if p.attribute in usable]
        prompts = [p for p, _ in known]
        firsts = {i: t for i, (_, t) in enumerate(known)}
        latents = _source_latents(model, sae, prompts, layer, config.llm_batch_size)
        results = {
            a: run_attribute(model, tokenizer, sae, layer, prompts, firsts, latents, a, config)
            for a in usable
        }
        scored = [r for r in results.values() if "cause_score" in r]
        summary.update({f"{entity_class}_{a}": r for a, r in results.items()})
        per_class[f"{entity_class}_results"] = summary
        if scored:
            class_scores[entity_class] = {
                k: _nanmean([r[k] for r in scored])
                for k in ("cause_score", "isolation_score", "disentangle_score")
            }
    metrics = {
        "ravel": {
            "disentanglement_score": _nanmean([s["disentangle_score"] for s in class_scores.values()]),
            "cause_score": _nanmean([s["cause_score"] for s in class_scores.values()]),
            "isolation_score": _nanmean([s["isolation_score"] for s in class_scores.values()]),
        }
    }
    unstructured: dict[str, Any] = {"per_class": per_class, "status": "ok"}
    if not class_scores:
        known = {c: r.get("known_per_attribute") for c, r in per_class.items()}
        unstructured["status"] = "too_few_known_prompts"
        unstructured["message"] = (
            f"the model completes too few prompts correctly (known per attribute: {known}; at least "
            f"{config.min_known_prompts} with two values needed for two attributes)"
        )
    return eval_output(EVAL_TYPE_RAVEL, asdict(config), metrics, [], sae, sae_id, release_id, unstructured)
