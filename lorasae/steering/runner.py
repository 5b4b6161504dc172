"""The steering evaluation end to end (SPEC §4.2): load the model, its SAE and the rank-1 `after` LoRA
adapter; pick the latent; make positive examples; tune alpha on the tuning split; evaluate on the test
split; write the results JSON, print the table and draw the histograms.

Outputs (under `eval/steering/`): `datasets/latent_<N>.json` (positives), `datasets[/builtin]/<set>.json`
(negatives), `results/latent_<N>_alpha.json` (tuning record), `results/latent_<N>.json` (evaluation),
`distributions/<N>/<set>.png|pdf` (histograms).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tabulate import tabulate
from torch import nn
from tqdm.auto import tqdm

from lorasae.atomic import atomic_write_json, read_json
from lorasae.cli import CommonArgs
from lorasae.data import default_dataset, load_texts
from lorasae.hooks import residual_at
from lorasae.models import check_layer, d_model, load_model, model_key, num_layers, unwrap
from lorasae.paths import eval_dir, root, sanitize
from lorasae.runtime import parse_device, seed_everything, setup_environment
from lorasae.steering.concept import ConceptChoice, choose_concept_latent, mean_activations
from lorasae.steering.examples import (
    LLMClient,
    LLMSettings,
    dedup,
    generate_llm_examples,
    mine_corpus_examples,
)
from lorasae.steering.intervention import check_mode, steer, unit_direction
from lorasae.steering.loglik import encode_texts, mean_logliks, pad_batch
from lorasae.steering.negatives import (
    CONCEPT_DOMAIN,
    CONCEPT_WINDOW,
    MINING_WINDOW,
    EvalSets,
    builtin_documents,
    load_negative_sets,
    split_sets,
    tuning_set_name,
)
from lorasae.steering.stats import Interval, lora_minus_base, normalised_delta
from lorasae.steering.tuning import (
    DEFAULT_MAX_NEGATIVE_DROP,
    AlphaScore,
    choose_alpha,
    default_grid,
    rule_text,
    score_alpha,
)

GEMMA_SCOPE_DEFAULT = "gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82"
KINDS: tuple[str, ...] = ("base", "lora")
MODEL_LABEL = {"base": "base", "lora": "LoRA"}


@dataclass
class SteeringArgs(CommonArgs):
    """Flags shared by the three steering scripts."""

    neuron: int | None = None
    """SAE latent to steer. Default: the latent that best separates the built-in world's science documents
    from its other domains (the choice is printed)."""

    sae: str | None = None
    """SAE: a folder (ours, SAELens or sparsify format) or a sae-lens release `release/sae_id`. Default: the
    newest final TopK SAE saved for the model under saved_saes/ (Gemma: Gemma Scope layer 12 if none)."""

    layer: int | None = None
    """Layer whose output is steered. Default: the SAE's hook layer."""

    adapter: str | None = None
    """LoRA adapter folder (PEFT format). Default: the newest rank-1 `after` adapter saved for the SAE."""

    mode: str = "multiplicative"
    """Steering edit: multiplicative (h + alpha (h.d) d, the paper's) or additive (h + alpha d)."""

    negatives: str = "auto"
    """Negative sets: hub (the original's five datasets), builtin (the built-in world's domains) or auto
    (builtin for the built-in model or dataset, hub otherwise)."""

    num_negatives: int = 100
    """Examples per negative set (the paper: 500 negatives over five sets)."""

    tuning_fraction: float = 0.3
    """Fraction of the positive examples used for tuning alpha; the rest are the test positives."""

    batch_size: int = 16
    """Examples per forward pass."""

    max_length: int = 64
    """Tokens per example (longer examples are truncated)."""

    @property
    def builtin_model(self) -> bool:
        """The built-in model, by name or as a folder holding its world.json."""
        return self.model_name == "tiny" or (Path(self.model_name).expanduser() / "world.json").is_file()

    @property
    def corpus(self) -> str:
        """Text to mine positives from: --dataset, else the built-in corpus for the built-in model and
        the project's default (RedPajama) otherwise."""
        if self.dataset:
            return self.dataset
        return "builtin" if self.builtin_model else default_dataset(self.model_name)

    @property
    def negatives_kind(self) -> str:
        if self.negatives == "auto":
            return "builtin" if self.builtin_model or self.corpus == "builtin" else "hub"
        if self.negatives not in ("builtin", "hub"):
            raise ValueError(f"--negatives must be auto, builtin or hub, got {self.negatives!r}")
        return self.negatives


# --- paths ----------------------------------------------------------------------------------------


def positives_path(latent: int, base: Path | None = None) -> Path:
    return eval_dir("steering", base) / "datasets" / f"latent_{latent}.json"


def alpha_record_path(latent: int, base: Path | None = None) -> Path:
    return eval_dir("steering", base) / "results" / f"latent_{latent}_alpha.json"


def results_path(latent: int, base: Path | None = None) -> Path:
    return eval_dir("steering", base) / "results" / f"latent_{latent}.json"


def distributions_dir(latent: int, base: Path | None = None) -> Path:
    return eval_dir("steering", base) / "distributions" / str(latent)


# --- model, SAE, adapter --------------------------------------------------------------------------


_PCT = re.compile(r"-(\d+)pct$")


def default_sae_source(model_name: str) -> str:
    """The newest final TopK SAE saved for the model (failing that, its latest checkpoint); Gemma Scope
    for Gemma when none is saved."""
    key = model_key(model_name)
    folder = root() / "saved_saes" / sanitize(key) / "normal"
    found = [p for p in folder.glob("*/model.layers.*") if (p / "cfg.json").exists()]
    final = [p for p in found if not _PCT.search(p.parent.name)]
    if final:
        return str(max(final, key=lambda p: (p / "cfg.json").stat().st_mtime))
    if found:
        return str(
            max(
                found,
                key=lambda p: (int(_PCT.search(p.parent.name).group(1)), (p / "cfg.json").stat().st_mtime),
            )
        )
    if key == "gemma":
        return GEMMA_SCOPE_DEFAULT
    raise FileNotFoundError(
        f"No SAE saved for model {key!r} under {folder}. Train one first "
        f"(`python train_sae.py --model_type {model_name}`) or pass --sae."
    )


def default_adapter(model_name: str, sae_source: str, layer: int, n_layers: int) -> Path:
    """The newest rank-1 adapter on layers L+1 … n−1 (`--LoRA_layers after`) trained for this SAE (for a
    final SAE, one trained on its 100% checkpoint also counts: the weights are the same)."""
    from lorasae.lora.adapters import find_adapter
    from lorasae.lora.sae_refs import source_tag

    tag = source_tag(sae_source)
    tags = [tag] if _PCT.search(tag) else [tag, f"{tag}-100pct"]
    span = f"{layer + 1}-{n_layers - 1}"
    for candidate in tags:
        try:
            return find_adapter(model_key(model_name), sae_tag=candidate, rank=1, lora_span=span)
        except FileNotFoundError as err:
            error = err
    raise FileNotFoundError(
        f"{error}\nThe steering eval compares the base model with a rank-1 adapter on the layers after the "
        f"SAE: `python train_lora.py --model_type {model_name} --sae_layer {layer} --rank 1 "
        "--LoRA_layers after --save_model`, or pass --adapter."
    ) from None


def model_world_seed(model: nn.Module) -> int:
    """The `seed` in `world.json` beside the model's weights (the built-in model records it), else 0."""
    folder = Path(str(getattr(unwrap(model), "name_or_path", "") or ""))
    info = folder / "world.json"
    if folder.parts and info.is_file():
        return int(read_json(info).get("seed", 0))
    return 0


@dataclass
class SteeringContext:
    """Everything the evaluation steers: the model (a PeftModel when an adapter is loaded), its tokenizer,
    the SAE whose decoder row gives the direction, the layer, and the latent."""

    model: nn.Module
    tokenizer: Any
    sae: Any
    layer: int
    model_name: str = "model"
    sae_source: str = "sae"
    adapter: Path | None = None
    latent: int | None = None
    concept: ConceptChoice | None = None
    world_seed: int | None = None
    """Seed of the built-in world the model was trained on (from the model folder's world.json; 0, the
    built-in default, for other models): concept documents, mining corpus and offline negatives use it."""

    def __post_init__(self) -> None:
        if self.world_seed is None:
            self.world_seed = model_world_seed(self.model)
        check_layer(self.model, self.layer)
        width = int(self.sae.W_dec.shape[1])
        if width != d_model(self.model):
            raise ValueError(
                f"The SAE reads {width}-dimensional activations but the model's residual stream has "
                f"{d_model(self.model)} dimensions: it was trained for another model."
            )

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS if self.adapter is not None else ("base",)

    @property
    def num_latents(self) -> int:
        return int(self.sae.W_dec.shape[0])

    @contextmanager
    def variant(self, kind: str) -> Iterator[None]:
        """`base`: adapters disabled; `lora`: adapters active."""
        if kind not in self.kinds:
            raise ValueError(f"model variant {kind!r} is not available (have {self.kinds})")
        if kind == "base" and self.adapter is not None:
            with self.model.disable_adapter():
                yield
        else:
            yield

    def direction(self) -> torch.Tensor:
        if self.latent is None:
            raise ValueError("no latent chosen yet")
        return unit_direction(self.sae.W_dec, self.latent)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "sae": self.sae_source,
            "layer": self.layer,
            "latent": self.latent,
            "adapter": str(self.adapter) if self.adapter is not None else None,
        }


def load_context(args: SteeringArgs, with_adapter: bool = True) -> SteeringContext:
    """Load the model, tokenizer, SAE (and the adapter) named by `args`."""
    from lorasae.sae.sources import load_sae, sae_hook_layer

    setup_environment(wandb=args.wandb)
    seed_everything(args.seed)
    check_mode(args.mode)
    device = parse_device(args.device)
    model, tokenizer = load_model(args.model_name, device, args.dtype)
    source = args.sae or default_sae_source(args.model_name)
    sae = load_sae(source, device=device, dtype=torch.float32, layer=args.layer)
    layer = args.layer if args.layer is not None else sae_hook_layer(sae)
    if layer is None:
        raise ValueError(f"The SAE {source} does not say which layer it reads: pass --layer.")
    adapter = None
    if with_adapter:
        adapter = (
            Path(args.adapter)
            if args.adapter
            else default_adapter(args.model_name, source, layer, num_layers(model))
        )
        from lorasae.lora.adapters import load_peft_model

        model = load_peft_model(model, adapter)
        model.eval()
    print(
        f"model {args.model_name} | SAE {source} (layer {layer}, {int(sae.W_dec.shape[0])} latents)"
        + (f" | adapter {adapter}" if adapter else "")
    )
    return SteeringContext(model, tokenizer, sae, layer, args.model_name, source, adapter)


# --- the latent -----------------------------------------------------------------------------------


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


# --- positive examples ----------------------------------------------------------------------------


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
) -> Path:
    """Write `datasets/latent_<N>.json`. With an LLM (and not `from_corpus`): ask it for examples of the
    described feature (few-shot with the corpus snippets that activate the latent most when no
    description is given); otherwise the top-activating corpus snippets. Existing examples are kept and
    new ones appended (deduplicated) unless `overwrite`."""
    if ctx.latent is None:
        raise ValueError("choose the latent first")
    path = positives_path(ctx.latent)
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


def load_positives(latent: int) -> list[str]:
    path = positives_path(latent)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: run `python eval/steering/make_positive_examples.py --neuron {latent}` first."
        )
    return list(read_json(path)["examples"])


# --- evaluation -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """Log-likelihoods and normalised Δs of one alpha: `[model kind][set name] -> per-example array`."""

    alpha: float
    mode: str
    unsteered: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    steered: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    delta: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


class Evaluator:
    """Steers one split through each model variant; unsteered log-likelihoods are computed once."""

    def __init__(
        self,
        ctx: SteeringContext,
        sets: EvalSets,
        batch_size: int = 16,
        max_length: int = 64,
        scale: float = 100.0,
    ) -> None:
        self.ctx = ctx
        self.batch_size = batch_size
        self.scale = scale
        tok = ctx.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        named = {"positive": sets.positive} | dict(sets.negatives)
        self.seqs = {name: encode_texts(tok, texts, max_length) for name, texts in named.items()}
        self._unsteered: dict[tuple[str, str], np.ndarray] = {}

    def _logliks(self, kind: str, name: str, alpha: float | None, mode: str) -> np.ndarray:
        with self.ctx.variant(kind):
            edit = (
                steer(self.ctx.model, self.ctx.layer, self.ctx.direction(), alpha, mode)
                if alpha is not None
                else nullcontext()
            )
            with edit:
                return mean_logliks(self.ctx.model, self.seqs[name], self.batch_size, self.pad_id)

    def unsteered(self, kind: str, name: str) -> np.ndarray:
        key = (kind, name)
        if key not in self._unsteered:
            self._unsteered[key] = self._logliks(kind, name, None, "multiplicative")
        return self._unsteered[key]

    def evaluate(self, alpha: float, mode: str = "multiplicative", progress: bool = False) -> Outcome:
        out = Outcome(float(alpha), mode)
        jobs = [(kind, name) for kind in self.ctx.kinds for name in self.seqs]
        for kind, name in tqdm(jobs, desc=f"alpha={alpha:g}", leave=False, disable=not progress):
            u = self.unsteered(kind, name)
            s = self._logliks(kind, name, alpha, mode)
            out.unsteered.setdefault(kind, {})[name] = u
            out.steered.setdefault(kind, {})[name] = s
            out.delta.setdefault(kind, {})[name] = normalised_delta(u, s, self.scale)
        return out

    @torch.no_grad()
    def residual_rms(self) -> float:
        """RMS norm of the residual stream at the steered layer over the split's tokens (BOS excluded)."""
        skip = 1 if self.ctx.tokenizer.bos_token_id is not None else 0
        total, count = 0.0, 0
        device = next(self.ctx.model.parameters()).device
        with self.ctx.variant("base"):
            for seqs in self.seqs.values():
                for start in range(0, len(seqs), self.batch_size):
                    batch = seqs[start : start + self.batch_size]
                    ids, mask = pad_batch(batch, self.pad_id)
                    h = residual_at(self.ctx.model, ids.to(device), self.ctx.layer, mask.to(device)).float()
                    m = mask.to(device).bool().clone()
                    m[:, :skip] = False
                    total += float(h[m].pow(2).sum())
                    count += int(m.sum())
        return math.sqrt(total / max(count, 1))


def build_splits(
    ctx: SteeringContext, args: SteeringArgs, llm: LLMClient | None = None
) -> tuple[EvalSets, EvalSets]:
    """(tuning, test) splits of the latent's positives and the negative sets."""
    if ctx.latent is None:
        raise ValueError("choose the latent first")
    kind = args.negatives_kind
    seed = ctx.world_seed if kind == "builtin" and ctx.world_seed is not None else args.seed
    negatives = load_negative_sets(kind, args.num_negatives, seed, llm)
    return split_sets(
        load_positives(ctx.latent), negatives, tuning_set_name(kind), args.tuning_fraction, args.seed
    )


def llm_from_env() -> LLMClient | None:
    settings = LLMSettings.from_env()
    return LLMClient(settings) if settings.available else None


# --- tuning ---------------------------------------------------------------------------------------


def _mode_entry(record: dict[str, Any], mode: str) -> dict[str, Any]:
    return record.get("modes", {}).get(mode, {})


def tune_alpha(
    ctx: SteeringContext,
    args: SteeringArgs,
    alpha: float | None = None,
    grid: Sequence[float] | None = None,
    tuning: bool = True,
    llm: LLMClient | None = None,
    max_negative_drop: float = DEFAULT_MAX_NEGATIVE_DROP,
) -> dict[str, Any]:
    """Evaluate one alpha (`alpha`) or sweep a grid on the tuning split (`tuning`; the test split
    otherwise), record the evaluations in `results/latent_<N>_alpha.json` (per steering mode and split;
    a record of another model, SAE, layer or adapter is replaced, and a split whose sets changed starts
    afresh), and choose alpha by the rule of `lorasae.steering.tuning` (budget `max_negative_drop`) over
    every alpha recorded for the split. Returns the record."""
    tune_sets, test_sets = build_splits(ctx, args, llm)
    split_name = "tuning" if tuning else "test"
    if not tuning:
        warnings.warn(
            "Evaluating alphas on the test split: choosing alpha this way leaks the test set.", stacklevel=2
        )
    sets = tune_sets if tuning else test_sets
    evaluator = Evaluator(ctx, sets, args.batch_size, args.max_length)
    if alpha is not None:
        alphas = [float(alpha)]
    elif grid:
        alphas = [float(a) for a in grid]
    else:
        alphas = default_grid(args.mode, evaluator.residual_rms() if args.mode == "additive" else None)
    scores = []
    for value in tqdm(alphas, desc="alpha sweep", disable=len(alphas) == 1):
        scores.append(score_alpha(value, evaluator.evaluate(value, args.mode).delta))

    assert ctx.latent is not None
    path = alpha_record_path(ctx.latent)
    key = ctx.describe()
    record: dict[str, Any] = read_json(path) if path.exists() else {}
    if {k: record.get(k) for k in key} != key:
        record = dict(key)  # a different model, SAE, layer or adapter: start afresh
    rule = rule_text(max_negative_drop)
    mode_entry = record.setdefault("modes", {}).setdefault(args.mode, {})
    mode_entry["rule"] = rule
    splits = mode_entry.setdefault("splits", {})
    entry = splits.setdefault(split_name, {"evaluations": []})
    if entry.get("sets") != sets.sizes():
        entry["evaluations"] = []  # other examples: earlier scores are not comparable
    entry["sets"] = sets.sizes()
    known = {float(e["alpha"]): e for e in entry["evaluations"]}
    for score in scores:
        known[score.alpha] = score.as_dict()
    entry["evaluations"] = [known[a] for a in sorted(known)]
    choice = choose_alpha([AlphaScore.from_dict(e) for e in entry["evaluations"]], max_negative_drop)
    entry["max_negative_drop"] = max_negative_drop
    entry["chosen_alpha"] = choice.alpha
    entry["warning"] = choice.warning
    entry["last_run"] = "sweep" if alpha is None else "single"
    atomic_write_json(path, record)

    rows = []
    for e in entry["evaluations"]:
        score = AlphaScore.from_dict(e)
        row = [f"{score.alpha:g}"]
        for kind in ctx.kinds:
            row += [score.positive[kind], score.negative[kind]]
        row += [score.selectivity, "←" if score.alpha == choice.alpha else ""]
        rows.append(row)
    headers = ["alpha"]
    for kind in ctx.kinds:
        headers += [f"{MODEL_LABEL[kind]} Δpos", f"{MODEL_LABEL[kind]} Δneg"]
    headers += ["selectivity", "chosen"]
    print(
        f"\nLatent {ctx.latent}, {args.mode} steering at layer {ctx.layer}, {split_name} split "
        f"({', '.join(f'{k}: {v}' for k, v in sets.sizes().items())}); Δ in % of the unsteered range"
    )
    print(tabulate(rows, headers=headers, floatfmt="+.3f"))
    print(f"Rule: {rule}")
    if choice.warning:
        warnings.warn(choice.warning, stacklevel=2)
    print(f"Chosen alpha = {choice.alpha:g} ({split_name} split) → {path}")
    return record


def recorded_alpha(latent: int, ctx: SteeringContext, mode: str) -> float:
    path = alpha_record_path(latent)
    if not path.exists():
        raise FileNotFoundError(
            f"No --alpha given and no tuning record {path}: run "
            f"`python eval/steering/tune_alpha.py --neuron {latent} --tuning` first, or pass --alpha."
        )
    record = read_json(path)
    mismatch = {k: (record.get(k), v) for k, v in ctx.describe().items() if record.get(k) != v}
    entry = _mode_entry(record, mode).get("splits", {}).get("tuning")
    if mismatch or not entry or entry.get("chosen_alpha") is None:
        problem = f"differs in {mismatch}" if mismatch else f"has no tuning-split choice for {mode} steering"
        raise ValueError(
            f"{path} does not fit this setup ({problem}): run tune_alpha.py --tuning (with the same "
            "--mode), or pass --alpha."
        )
    return float(entry["chosen_alpha"])


# --- the evaluation -------------------------------------------------------------------------------


def _summary(outcome: Outcome, kinds: Sequence[str], confidence: float) -> dict[str, Any]:
    sets = list(next(iter(outcome.delta.values())))
    negatives = [s for s in sets if s != "positive"]
    summary: dict[str, Any] = {}
    groups = {name: [name] for name in sets} | {"negative (all)": negatives}
    for label, members in groups.items():
        entry: dict[str, Any] = {"n": int(sum(len(outcome.delta[kinds[0]][m]) for m in members))}
        for kind in kinds:
            cat = {
                key: np.concatenate([getattr(outcome, key)[kind][m] for m in members])
                for key in ("unsteered", "steered", "delta")
            }
            entry[kind] = {
                "mean_loglik_unsteered": float(cat["unsteered"].mean()),
                "mean_loglik_steered": float(cat["steered"].mean()),
                "delta_mean": float(cat["delta"].mean()),
            }
        if "lora" in kinds:
            lora = np.concatenate([outcome.delta["lora"][m] for m in members])
            base = np.concatenate([outcome.delta["base"][m] for m in members])
            entry["lora_minus_base"] = lora_minus_base(lora, base, confidence).as_dict()
        summary[label] = entry
    return summary


def _print_table(summary: dict[str, Any], kinds: Sequence[str], confidence: float) -> None:
    rows = []
    for label, entry in summary.items():
        row = [label, entry["n"]]
        row += [entry[k]["delta_mean"] for k in kinds]
        if "lora_minus_base" in entry:
            iv = entry["lora_minus_base"]
            row.append(str(Interval(iv["mean"], iv["low"], iv["high"], iv["n"], iv["confidence"])))
        rows.append(row)
    headers = ["set", "n"] + [f"{MODEL_LABEL[k]} Δ" for k in kinds]
    if "lora" in kinds:
        headers.append(f"LoRA − base Δ [{confidence:.0%} CI]")
    print(tabulate(rows, headers=headers, floatfmt="+.3f"))


def run_steering_eval(
    ctx: SteeringContext,
    args: SteeringArgs,
    alpha: float | None = None,
    confidence: float = 0.90,
    llm: LLMClient | None = None,
    per_set_histograms: bool = True,
) -> dict[str, Any]:
    """Steer the test split with `alpha` (default: the tuning record's choice) through the base and LoRA
    models; write `results/latent_<N>.json` and the histograms (`all` pools the negative sets; one per
    negative set too with `per_set_histograms`), print the table. Returns the results."""
    from lorasae.plotting.steering import plot_steering_histograms

    assert ctx.latent is not None
    source = "--alpha"
    if alpha is None:
        alpha, source = recorded_alpha(ctx.latent, ctx, args.mode), str(alpha_record_path(ctx.latent))
    _, test_sets = build_splits(ctx, args, llm)
    outcome = Evaluator(ctx, test_sets, args.batch_size, args.max_length).evaluate(
        alpha, args.mode, progress=True
    )
    kinds = ctx.kinds
    summary = _summary(outcome, kinds, confidence)

    out_dir = distributions_dir(ctx.latent)
    figures: list[str] = []
    negatives = [s for s in test_sets.negatives]
    panels = [(name, [name]) for name in negatives] if per_set_histograms else []
    for label, members in [*panels, ("all", negatives)]:
        deltas = {
            kind: {
                "positive": outcome.delta[kind]["positive"],
                "negative": np.concatenate([outcome.delta[kind][m] for m in members]),
            }
            for kind in kinds
        }
        title = f"Latent {ctx.latent}, α={alpha:g} ({args.mode}); negatives: {label}"
        figures += [str(p) for p in plot_steering_histograms(deltas, out_dir / f"{label}.png", title=title)]

    results = ctx.describe() | {
        "alpha": float(alpha),
        "alpha_source": source,
        "mode": args.mode,
        "split": "test",
        "normalisation": "min-max per (model, set) on unsteered values, scaled to 0-100",
        "loglik": "mean over tokens of log p(ids[t+1] | ids[:t+1]) (logits[:-1] score ids[1:]), BOS first",
        "confidence": confidence,
        "sets": test_sets.sizes(),
        "summary": summary,
        "deltas": {k: {s: v.tolist() for s, v in d.items()} for k, d in outcome.delta.items()},
        "logliks": {
            k: {
                s: {"unsteered": outcome.unsteered[k][s].tolist(), "steered": outcome.steered[k][s].tolist()}
                for s in outcome.delta[k]
            }
            for k in kinds
        },
        "histograms": figures,
    }
    path = atomic_write_json(results_path(ctx.latent), results)

    print(
        f"\nSteering latent {ctx.latent} at layer {ctx.layer}: α={alpha:g} ({args.mode}, from {source}); "
        "Δ = steered − unsteered normalised log-likelihood (% of the unsteered range)"
    )
    _print_table(summary, kinds, confidence)
    if "lora" in kinds:
        pos, neg = summary["positive"]["lora_minus_base"], summary["negative (all)"]["lora_minus_base"]
        print(
            f"POSITIVE CI ({confidence:.0%}): ({pos['low']:+.3f}, {pos['high']:+.3f})   "
            f"NEGATIVE CI ({confidence:.0%}): ({neg['low']:+.3f}, {neg['high']:+.3f})"
        )
    print(f"Results → {path}\nHistograms → {out_dir}/")
    return results


__all__ = [
    "Evaluator",
    "Outcome",
    "SteeringArgs",
    "SteeringContext",
    "build_splits",
    "choose_latent",
    "default_sae_source",
    "load_context",
    "make_positive_examples",
    "resolve_latent",
    "run_steering_eval",
    "tune_alpha",
]
