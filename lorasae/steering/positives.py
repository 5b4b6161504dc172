"""The latent's positive examples (`datasets/latent_<N>.json`): written by an LLM or mined from a corpus
(`make_positive_examples`), and read back (`load_positives`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lorasae.atomic import atomic_write_json, read_json
from lorasae.data import load_texts
from lorasae.llm import LLMClient
from lorasae.steering.args import positives_path
from lorasae.steering.context import SteeringContext
from lorasae.steering.examples import dedup, generate_llm_examples, mine_corpus_examples
from lorasae.steering.negatives import MINING_WINDOW, builtin_documents


def corpus_texts(dataset: str, seed: int) -> Iterable[str]:
    """Texts to mine: for `builtin`, fresh documents of every built-in domain (`MINING_WINDOW` of world
    `seed`, interleaved); otherwise the texts of `lorasae.data.load_texts`."""
    if dataset == "builtin":
        from lorasae.world.corpus import DOMAINS

        start, stop = MINING_WINDOW
        per_domain = [builtin_documents(d, start, stop, seed) for d in DOMAINS]
        return [doc for group in zip(*per_domain) for doc in group]
    return load_texts(dataset, seed=seed)


def make_positive_examples(
    ctx: SteeringContext,
    dataset: str,
    description: str | None = None,
    from_corpus: bool | None = None,
    num_examples: int = 500,
    llm: LLMClient | None = None,
    per_call: int = 25,
    words: int = 12,
    concurrency: int = 4,
    max_calls: int | None = None,
    max_snippets: int = 20_000,
    overwrite: bool = False,
    seed: int = 42,
    batch_size: int = 32,
    variant: str = "",
) -> Path:
    """Write `datasets/latent_<N>[__<variant>].json` (`variant`: the settings off their defaults,
    `lorasae.steering.variants`). With an LLM (and not `from_corpus`): ask it for examples of the
    described feature (few-shot with the corpus snippets that activate the latent most when no
    description is given); otherwise the top-activating corpus snippets. Existing examples are kept and
    new ones appended (deduplicated) unless `overwrite`."""
    if ctx.latent is None:
        raise ValueError("choose the latent first")
    path = positives_path(ctx.latent, variant=variant)
    existing: list[str] = []
    if path.exists() and not overwrite:
        existing = list(read_json(path).get("examples", []))
    use_corpus = from_corpus if from_corpus is not None else llm is None
    needed = max(0, num_examples - len(existing))
    record: dict[str, Any] = ctx.describe() | {"corpus": dataset}
    if use_corpus or description is None:
        with ctx.variant("base"):
            mined = mine_corpus_examples(
                ctx.model,
                ctx.tokenizer,
                ctx.sae,
                ctx.layer,
                ctx.latent,
                corpus_texts(dataset, ctx.world_seed if dataset == "builtin" else seed),
                num_examples=num_examples if use_corpus else 10,
                max_snippets=max_snippets,
                batch_size=batch_size,
            )
        if not mined:
            raise ValueError(f"latent {ctx.latent} never fires on the corpus: choose another latent")
    if use_corpus:
        new = [m.text for m in mined]
        examples = dedup(existing + new)[: max(num_examples, len(existing))]
        record |= {
            "source": "corpus",
            "peak_activation": [m.max_activation for m in mined],
            "mean_activation": [m.mean_activation for m in mined],
        }
        print(
            f"Mined {len(new)} snippets of {dataset} where latent {ctx.latent} fires most "
            f"(peak activation {mined[0].max_activation:.3f} … {mined[-1].max_activation:.3f})."
        )
    else:
        if llm is None:
            raise ValueError("LLM generation needs an LLM client (set OPENAI_API_KEY) or use --from_corpus")
        seeds: list[str] = []
        if description is None:
            seeds = [m.text for m in mined]
            description = "it is similar in topic and style to the example texts below"
        with tqdm(total=needed, desc="LLM examples", leave=False) as bar:

            def progress(done: int, _total: int) -> None:
                bar.update(done - bar.n)

            report = generate_llm_examples(
                llm, description, needed, seeds, per_call, words, concurrency, max_calls, existing, progress
            )
        examples = existing + report.examples
        record |= {
            "source": "llm",
            "description": description,
            "seed_examples": seeds,
            "llm_model": llm.settings.model,
            "llm_calls": report.calls,
            "llm_retries": report.retries,
            "duplicates_dropped": report.duplicates,
        }
        print(
            f"LLM: {report.calls} requests ({report.retries} retries), {report.parsed} parsed, "
            f"{report.duplicates} duplicates dropped, {len(report.examples)} new examples."
        )
    if len(examples) < 4:
        raise ValueError(f"only {len(examples)} positive examples: the evaluation needs at least 4")
    atomic_write_json(path, {"examples": examples} | record)
    print(f"{len(examples)} positive examples for latent {ctx.latent} → {path}")
    return path


def load_positives(latent: int, path: Path | None = None) -> list[str]:
    """The examples of `path` (default: the latent's positives of the default settings)."""
    path = path if path is not None else positives_path(latent)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: run `python eval/steering/make_positive_examples.py --neuron {latent}` first."
        )
    return list(read_json(path)["examples"])


__all__ = [
    "make_positive_examples",
]
