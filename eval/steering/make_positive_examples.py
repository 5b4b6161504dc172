"""Positive examples for an SAE latent (SPEC §4.2) → eval/steering/datasets/latent_<N>[__<variant>].json
(`__<variant>`: settings off the defaults, `lorasae/steering/variants.py`).

    python eval/steering/make_positive_examples.py --device 0 --neuron N [--description TEXT]
    python eval/steering/make_positive_examples.py --device cpu --model tiny            (offline)

With an LLM key (OPENAI_API_KEY, optional OPENAI_BASE_URL / OPENAI_MODEL, from the environment or .env)
an OpenAI-compatible LLM writes examples of the described feature (25 per request, ~12 words each,
deduplicated); with --from_corpus, or when no key is set, the corpus snippets that activate the latent
most are used. Without --neuron the latent that best separates the built-in science domain is chosen.
"""

import sys

from lorasae.cli import parse
from lorasae.errors import main_guard
from lorasae.steering.scripts import PositivesConfig as Config
from lorasae.steering.scripts import make_positives as main


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.errors`)."""
    main(parse(Config, argv))


if __name__ == "__main__":
    sys.exit(cli())
