"""The three steering scripts' flags and bodies (`eval/steering/make_positive_examples.py`, `tune_alpha.py`,
`run_eval.py` are thin wrappers over these), so `make demo` runs the same code the README commands run."""

from __future__ import annotations

from dataclasses import dataclass

from lorasae.core.llm import DEFAULT_MAX_RETRIES, LLMClient, LLMSettings
from lorasae.steering.alpha_rule import parse_grid
from lorasae.steering.alpha_sweep import tune_alpha
from lorasae.steering.args import SteeringArgs, positives_path
from lorasae.steering.context import load_context
from lorasae.steering.evaluator import llm_from_env
from lorasae.steering.final_eval import run_steering_eval
from lorasae.steering.latent import resolve_latent
from lorasae.steering.positives_file import make_positive_examples


@dataclass
class PositivesConfig(SteeringArgs):
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


def make_positives(config: PositivesConfig) -> None:
    from lorasae.evals.identity import done_already, eval_identity, write_eval_record
    from lorasae.steering.variants import step_variant

    ctx = load_context(config, with_adapter=False)
    resolve_latent(ctx, config.neuron)
    off, variant = step_variant(config)
    settings = {k: v for k, v in vars(config).items() if k not in ("model", "sae", "adapter")}
    settings |= {"latent": ctx.latent, "off_default": off}
    identity = eval_identity(ctx.model_name, [ctx.sae_source], None, settings, variant)
    if done_already("positives", positives_path(ctx.latent, variant=variant), identity, config.overwrite):
        return
    llm_settings = LLMSettings.from_env(
        model=config.llm_model, base_url=config.llm_base_url, max_retries=config.max_retries
    )
    use_llm = llm_settings.available and not config.from_corpus
    if config.from_corpus is False and not llm_settings.available:
        raise SystemExit("--from_corpus false needs an LLM key: set OPENAI_API_KEY (environment or .env).")
    path = make_positive_examples(
        ctx,
        config.corpus,
        description=config.description,
        from_corpus=not use_llm,
        num_examples=config.num_examples,
        llm=LLMClient(llm_settings, seed=config.seed) if use_llm else None,
        per_call=config.per_call,
        words=config.words,
        concurrency=config.concurrency,
        max_calls=config.max_calls,
        max_snippets=config.max_snippets,
        overwrite=config.overwrite,
        seed=config.seed,
        batch_size=config.batch_size,
        variant=variant,
    )
    write_eval_record(path, "steering_positives", identity)


@dataclass
class TuneConfig(SteeringArgs):
    """Evaluate one alpha or sweep a grid and choose one."""

    tuning: bool = True
    """Use the tuning split (default). `--tuning false` evaluates on the test split instead (for
    inspection only: choosing alpha there leaks the test set)."""

    alpha: float | None = None
    """Evaluate this alpha only (recorded with the others). Default: sweep the grid."""

    max_negative_drop: float = 5.0
    """Side-effect budget of the choice: the negatives' mean Δ may not fall below minus this (normalised
    log-likelihood, in percent of the unsteered range), for either model."""

    grid: str | None = None
    """Alphas to sweep, e.g. '0.5,1,2,4'. Default: 0.25 … 32 (doubling) for multiplicative steering;
    0.125 … 4 × the residual RMS norm for additive."""


def tune(config: TuneConfig) -> None:
    ctx = load_context(config, with_adapter=True)
    resolve_latent(ctx, config.neuron)
    grid = parse_grid(config.grid) if config.grid else None
    tune_alpha(
        ctx,
        config,
        alpha=config.alpha,
        grid=grid,
        tuning=config.tuning,
        llm=llm_from_env(),
        max_negative_drop=config.max_negative_drop,
    )


@dataclass
class EvalConfig(SteeringArgs):
    """Evaluate steering on the test split."""

    alpha: float | None = None
    """Steering strength. Default: the alpha chosen by tune_alpha.py on the tuning split."""

    confidence: float = 0.90
    """Confidence level of the t-intervals."""


def evaluate(config: EvalConfig) -> None:
    ctx = load_context(config, with_adapter=True)
    resolve_latent(ctx, config.neuron)
    run_steering_eval(ctx, config, alpha=config.alpha, confidence=config.confidence, llm=llm_from_env())
