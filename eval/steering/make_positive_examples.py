"""Positive examples for an SAE latent (SPEC §4.2) → eval/steering/datasets/latent_<N>.json.

    python eval/steering/make_positive_examples.py --device 0 --neuron N [--description TEXT]
    python eval/steering/make_positive_examples.py --device cpu --model tiny            (offline)

With an LLM key (OPENAI_API_KEY, optional OPENAI_BASE_URL / OPENAI_MODEL, from the environment or .env)
an OpenAI-compatible LLM writes examples of the described feature (25 per request, ~12 words each,
deduplicated); with --from_corpus, or when no key is set, the corpus snippets that activate the latent
most are used. Without --neuron the latent that best separates the built-in science domain is chosen.
"""

import sys
from dataclasses import dataclass

from lorasae.cli import parse
from lorasae.errors import main_guard
from lorasae.llm import DEFAULT_MAX_RETRIES, LLMClient, LLMSettings
from lorasae.steering.args import SteeringArgs
from lorasae.steering.context import load_context
from lorasae.steering.latent import resolve_latent
from lorasae.steering.positives import make_positive_examples


@dataclass
class Config(SteeringArgs):
    """Make positive examples for a latent."""

    description: str | None = None
    """What the latent means (e.g. from Neuronpedia), for the LLM. Default: the LLM imitates the corpus
    snippets that activate the latent most."""

    from_corpus: bool | None = None
    """Take the corpus snippets that activate the latent most instead of asking an LLM. Default: true
    when no LLM key is set."""

    num_examples: int = 500
    """How many examples the file should hold."""

    per_call: int = 25
    """Examples asked for per LLM request."""

    words: int = 12
    """Approximate words per example (LLM)."""

    concurrency: int = 4
    """LLM requests in flight at once."""

    max_calls: int | None = None
    """Upper bound on LLM requests (default: twice the number needed, plus two)."""

    llm_model: str | None = None
    """LLM name (default: $OPENAI_MODEL or gpt-4o-mini)."""

    llm_base_url: str | None = None
    """OpenAI-compatible endpoint (default: $OPENAI_BASE_URL or OpenAI's)."""

    max_retries: int = DEFAULT_MAX_RETRIES
    """Retries per LLM request on transient errors (exponential backoff)."""

    max_snippets: int = 20_000
    """Corpus snippets (sentences) scored when mining."""

    overwrite: bool = False
    """Start the file afresh instead of appending new examples to it."""


def main(config: Config) -> None:
    ctx = load_context(config, with_adapter=False)
    resolve_latent(ctx, config.neuron)
    settings = LLMSettings.from_env(
        model=config.llm_model, base_url=config.llm_base_url, max_retries=config.max_retries
    )
    use_llm = settings.available and not config.from_corpus
    if config.from_corpus is False and not settings.available:
        raise SystemExit("--from_corpus false needs an LLM key: set OPENAI_API_KEY (environment or .env).")
    make_positive_examples(
        ctx,
        config.corpus,
        description=config.description,
        from_corpus=not use_llm,
        num_examples=config.num_examples,
        llm=LLMClient(settings, seed=config.seed) if use_llm else None,
        per_call=config.per_call,
        words=config.words,
        concurrency=config.concurrency,
        max_calls=config.max_calls,
        max_snippets=config.max_snippets,
        overwrite=config.overwrite,
        seed=config.seed,
        batch_size=config.batch_size,
    )


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.errors`)."""
    main(parse(Config, argv))


if __name__ == "__main__":
    sys.exit(cli())
