"""Which SAE latent to steer: the one given (checked against the SAE's width), or the latent that best
separates the built-in world's concept domain (science) from its other domains."""

from __future__ import annotations

from lorasae.steering.concept import ConceptChoice, choose_concept_latent, mean_activations
from lorasae.steering.context import SteeringContext
from lorasae.steering.negatives import CONCEPT_DOMAIN, CONCEPT_WINDOW, builtin_documents


def concept_texts(seed: int, per_domain: int | None = None) -> tuple[list[str], list[str]]:
    """Fresh documents of every built-in domain (`CONCEPT_WINDOW` of world `seed`): (texts, domains)."""
    from lorasae.world.corpus import DOMAINS

    start, stop = CONCEPT_WINDOW
    if per_domain is not None:
        stop = start + per_domain
    texts: list[str] = []
    domains: list[str] = []
    for domain in DOMAINS:
        docs = builtin_documents(domain, start, stop, seed)
        texts += docs
        domains += [domain] * len(docs)
    return texts, domains


def choose_latent(
    ctx: SteeringContext,
    per_domain: int | None = None,
    batch_size: int = 16,
    max_length: int = 128,
) -> ConceptChoice:
    """The latent that best separates the concept domain (science) from the other built-in domains, by d'
    of per-document mean activations; sets `ctx.latent`."""
    assert ctx.world_seed is not None
    texts, domains = concept_texts(ctx.world_seed, per_domain)
    with ctx.variant("base"):
        features = mean_activations(
            ctx.model, ctx.tokenizer, ctx.sae, ctx.layer, texts, batch_size, max_length
        )
    choice = choose_concept_latent(features, [d == CONCEPT_DOMAIN for d in domains])
    ctx.latent, ctx.concept = choice.latent, choice
    print(f"No --neuron given: {choice.describe(CONCEPT_DOMAIN)}.")
    return choice


def resolve_latent(ctx: SteeringContext, neuron: int | None) -> int:
    """`neuron` (checked against the SAE's width), or the concept latent when None; sets `ctx.latent`."""
    if neuron is None:
        return choose_latent(ctx).latent
    if not 0 <= neuron < ctx.num_latents:
        raise ValueError(f"--neuron {neuron} is out of range: the SAE has {ctx.num_latents} latents.")
    ctx.latent = neuron
    return neuron


__all__ = [
    "choose_latent",
    "resolve_latent",
]
