"""`eval/dashboard/run.py`: find the SAE (and its adapter) through the store, collect the latents' data on
the validation chunks every script shares, write the pages, the data and the run record; `demo_stage` is
the same run as one stage of `make demo`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasae.core import paths
from lorasae.core.atomic import atomic_dir, atomic_write_json, atomic_write_text
from lorasae.core.cli import CommonArgs, SaeChoiceArgs, field, parse_count
from lorasae.core.fingerprint import weights_digest
from lorasae.core.records import model_weights_digest, write_record
from lorasae.core.runtime import parse_device, seed_everything, setup_environment
from lorasae.dashboard.collect import collect_contexts, collect_stats
from lorasae.dashboard.features import feature, latent_record
from lorasae.dashboard.logits import direct_logits
from lorasae.dashboard.neuronpedia import export_neuronpedia, neuronpedia_ids
from lorasae.dashboard.ranking import parse_latents
from lorasae.dashboard.render import index_page, latent_page
from lorasae.evals.capabilities import consumer
from lorasae.evals.identity import adapter_label, done_already, portable_source
from lorasae.evals.shape import DemoContext, Stage
from lorasae.model.data import default_dataset, load_token_split
from lorasae.model.defaults import (
    default_ctx_len,
    default_num_val_tokens,
    default_sae_layer,
    default_val_batch_size,
)
from lorasae.model.load import model_key, model_shape, resolve_model_name, special_token_ids
from lorasae.store import (
    AdapterFilter,
    SaeRef,
    SaeRun,
    adapter_line,
    chosen_sae,
    load_bundle,
    resolve_adapter,
    resolve_sae,
)
from lorasae.store.adapter_choice import adapter_help
from lorasae.store.adapter_flags import AdapterChoiceArgs

MAX_CONTEXTS = 100
"""The cap on top contexts per latent and model (pages stay small: ~20 tokens per context)."""


@dataclass
class DashboardArgs(AdapterChoiceArgs, SaeChoiceArgs, CommonArgs):
    """Static HTML dashboards of SAE latents (top contexts, activation histogram, logits), for the base
    model and, with a LoRA adapter, the LoRA model beside it with what changed."""

    adapter: str | None = field(
        default=None,
        help=adapter_help(
            "LoRA adapter folder (PEFT format); 'none' for the base model alone. Default: the default "
            "adapter (of --rank and --lora_span when given)."
        ),
    )

    latents: str | None = None
    """Latents to show: ids ('3,17'), 'changed:N' (the N latents whose firing count the adapter changes
    most: |log2((n_LoRA + 1) / (n_base + 1))| with n the tokens a latent fires on, ties by the change of
    its mean activation when firing), 'frequent:N' (the N that fire most in the base model), or a mix
    ('3,changed:10'). Default: changed:10 with an adapter, frequent:10 without."""

    num_tokens: int | None = field(default=None, type=parse_count)
    """Tokens scanned: the first chunks of the trainers' validation split (held out from SAE and LoRA
    training). Default: that split (1M tokens; 8,192 for small models)."""

    ctx_len: int | None = None
    """Tokens per chunk. Default: the trainers' (1024, capped at the model's context)."""

    batch_size: int | None = None
    """Chunks per forward pass. Default: the trainers' validation batch."""

    contexts: int = 20
    """Top contexts per latent and model (at most 100): the chunks with the highest maximum activation."""

    context_before: int = 16
    """Tokens shown before a context's maximum."""

    context_after: int = 4
    """Tokens shown after a context's maximum."""

    logits: int = 10
    """Tokens listed as pushed up and down by the decoder direction."""

    export: str | None = None
    """'neuronpedia': also write the features as Neuronpedia upload-batch payloads
    (neuronpedia/{base,lora}/batch-<i>.json in the output folder, at most 128 features each)."""

    out: str | None = None
    """Output folder. Default: eval/dashboard/<model>/<sae tag>/<adapter label or 'base'>/."""

    note: str | None = None
    """A line shown on every page (e.g. what a listed latent is)."""

    progress: bool = True
    """Show progress bars."""

    overwrite: bool = False
    """Redo dashboards whose folder exists with a run record of the same run (the same SAE, adapter and
    their weights, model and settings); by default such an identical rerun is skipped, saying so."""


def sae_tag(model_name: str, ref: SaeRef) -> str:
    """The SAE's tag in output names (as train_lora.py and the interpretability analysis name it)."""
    return SaeRun((ref,)).tag(default_layer=default_sae_layer(model_shape(model_name).n_layers))


def dashboard_adapter(args: DashboardArgs, ref: SaeRef) -> Path | None:
    """The adapter the pages compare with: None for --adapter none, the folder given, else the store's
    default adapter of the SAE (of --rank and --lora_span when given); checked to pair with the SAE."""
    if (args.adapter or "").lower() == "none":
        return None
    return resolve_adapter(args.model_name, ref, args.adapter, args.adapter_filter())


def check_args(args: DashboardArgs) -> None:
    """Flag values that cannot work, before anything loads."""
    if not 1 <= args.contexts <= MAX_CONTEXTS:
        raise ValueError(f"--contexts must be 1 … {MAX_CONTEXTS}, got {args.contexts}.")
    if args.context_before < 0 or args.context_after < 0 or args.logits < 1:
        raise ValueError("--context_before and --context_after must be ≥ 0 and --logits ≥ 1.")
    if args.export not in (None, "neuronpedia"):
        raise ValueError(f"--export must be 'neuronpedia', got {args.export!r}.")
    if args.latents is not None:
        parse_latents(args.latents)


SHORT_NAMES = {
    "latents_spec": "latents", "dataset": "data", "num_tokens": "tokens", "ctx_len": "ctx",
    "contexts": "contexts", "context_before": "before", "context_after": "after", "logits": "logits",
    "seed": "seed",
}  # fmt: skip


def run_settings(args: DashboardArgs, adapter: Path | None) -> dict[str, Any]:
    """The settings that decide the pages' numbers, defaults resolved (for the model of `args`)."""
    shape = model_shape(args.model_name)
    ctx_len = args.ctx_len or default_ctx_len(shape.max_positions)
    return {
        "latents_spec": args.latents or ("changed:10" if adapter is not None else "frequent:10"),
        "dataset": args.dataset or default_dataset(args.model_name),
        "num_tokens": args.num_tokens or default_num_val_tokens(shape.d_model), "ctx_len": ctx_len,
        "contexts": args.contexts, "context_before": args.context_before, "context_after": args.context_after,
        "logits": args.logits, "seed": args.seed,
    }  # fmt: skip


def output_folder(args: DashboardArgs, sae_tag_: str, label: str | None, adapter: Path | None) -> Path:
    """`eval/dashboard/<model>/<sae tag>/<adapter label or 'base'>[__<variant>]/`: the variant names the
    settings off the script's defaults (`lorasae.core.paths.settings_variant`), so dashboards of other
    latents or sizes (the demo's: the steering latent and changed:8) never replace the default ones."""
    defaults = DashboardArgs(model_type=args.model_type, model=args.model)
    variant = paths.settings_variant(
        run_settings(args, adapter), run_settings(defaults, adapter), SHORT_NAMES
    )
    folder = paths.dashboard_dir(model_key(args.model_name), sae_tag_)
    return folder / paths.with_variant(label or "base", variant)


def run_dashboard(args: DashboardArgs) -> Path:
    """The dashboards end to end; returns the output folder (holding index.html)."""
    check_args(args)
    setup_environment(wandb=args.wandb)
    seed_everything(args.seed)
    name = args.model_name
    shape = model_shape(name)
    ref = chosen_sae(args)
    adapter = dashboard_adapter(args, ref)
    print(adapter_line(adapter, "dashboards"))
    bundle = load_bundle(
        name, [ref], adapter, device=parse_device(args.device), dtype=args.dtype, suite=consumer("dashboards")
    )
    layer, sae, model, tokenizer = bundle.layer, bundle.sae, bundle.model, bundle.tokenizer
    resolved = run_settings(args, adapter)
    ctx_len, num_tokens, dataset = resolved["ctx_len"], resolved["num_tokens"], resolved["dataset"]
    batch_size = args.batch_size or default_val_batch_size(shape.d_model, ctx_len)
    chunks = load_token_split(dataset, tokenizer, ctx_len, num_tokens, args.seed).val
    special = special_token_ids(tokenizer)
    tag = sae_tag(name, ref)
    label = adapter_label(adapter) if adapter is not None else None
    n_latents = int(sae.W_dec.shape[0])
    print(
        f"model {name} | SAE {ref.source} (layer {layer}, {n_latents} latents) | adapter {adapter} | "
        f"{len(chunks)} chunks × {ctx_len} tokens of {dataset} (validation split)"
    )

    spec = resolved["latents_spec"]
    out = Path(args.out) if args.out else output_folder(args, tag, label, adapter)
    identity = {
        "model": portable_source(name),
        "model_digest": model_weights_digest(resolve_model_name(name)),
        "sae": portable_source(ref.source),
        "sae_digest": weights_digest(ref.source),
        "layer": layer,
        "adapter": portable_source(adapter) if adapter is not None else None,
        "settings": resolved,
    }
    exported = args.export != "neuronpedia" or (out / "neuronpedia").is_dir()
    if exported and done_already("dashboard", out, identity, args.overwrite, ignore=("latents",)):
        return out
    variants: dict[str, Callable[[], AbstractContextManager]] = {"base": nullcontext}
    if adapter is not None:
        variants = {"base": model.disable_adapter, "lora": nullcontext}
    common = dict(special=special, batch_size=batch_size)
    stats = {
        v: collect_stats(
            model,
            sae,
            layer,
            chunks,
            n_top=args.contexts,
            progress=args.progress,
            variant=ctx,
            label=v,
            **common,
        )  # fmt: skip
        for v, ctx in variants.items()
    }
    reasons = parse_latents(spec).resolve(n_latents, stats["base"], stats.get("lora"))
    latents = list(reasons)
    print(f"latents ({spec}): {latents}")
    features: dict[int, dict[str, Any]] = {i: {} for i in latents}
    for v, ctx in variants.items():
        contexts = collect_contexts(model, sae, layer, chunks, stats[v], latents, variant=ctx,
                                    left=args.context_before, right=args.context_after, **common)  # fmt: skip
        with ctx():
            logits = direct_logits(model, sae.W_dec, latents, args.logits)
        for i in latents:
            features[i][v] = feature(i, stats[v], contexts[i], logits[i], tokenizer)
    shown_source = portable_source(ref.source)
    data = {
        "model": name,
        "model_label": model_key(name),
        "sae": portable_source(ref.source),
        "sae_tag": tag,
        "layer": layer,
        "adapter": portable_source(adapter) if adapter is not None else None,
        "adapter_label": label,
        "dataset": dataset,
        "num_tokens": stats["base"].num_tokens,
        "ctx_len": ctx_len,
        "contexts_cap": args.contexts,
        "latents_spec": spec,
        "neuronpedia": neuronpedia_ids(model_key(name), layer, tag, label),
        "description": (
            f"{model_key(name)} · SAE {shown_source} (layer {layer}, {n_latents} latents)"
            + (f" · adapter {label}" if label else "")
            + f" · {stats['base'].num_tokens:,} tokens of {dataset} validation chunks (held out from SAE and "
            f"LoRA training; BOS/EOS/PAD not counted) · up to {args.contexts} contexts per latent and model, "
            f"{args.context_before} tokens before and {args.context_after} after the maximum."
        ),
        "note": args.note,
        "latents": [
            {**latent_record(i, features[i], stats["base"], stats.get("lora")), "chosenAs": reasons[i]}
            for i in latents
        ],
    }
    write_pages(data, out, args.export)
    write_record(out, "dashboard", {**identity, "latents": latents})
    print(f"wrote {out / 'index.html'} ({len(latents)} latent pages)")
    return out


def write_pages(data: dict[str, Any], out: Path, export: str | None = None) -> None:
    """`data.json`, `index.html`, `latent_<i>.html` (and `neuronpedia/` when asked) into `out`, at once."""
    with atomic_dir(out) as tmp:
        atomic_write_json(tmp / "data.json", data, indent=None)
        atomic_write_text(tmp / "index.html", index_page(data))
        for record in data["latents"]:
            atomic_write_text(tmp / f"latent_{record['index']}.html", latent_page(data, record))
        if export == "neuronpedia":
            export_neuronpedia(data, tmp / "neuronpedia")


def steering_latent() -> int | None:
    """The latent of the newest steering result (`lorasae.results.find_steering_results`: the files
    `latent_<N>.json` in any result slot), if any."""
    from lorasae.results import find_steering_results

    found = sorted(find_steering_results(None), key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        stem = path.name.removesuffix(".json").removeprefix("latent_")
        if stem.isdigit():
            return int(stem)
    return None


def demo_stage(ctx: DemoContext) -> Stage:
    """`make demo`'s stage (the registry's one signature, `lorasae.evals.DemoContext`): dashboards of the built-in model's main
    SAE for the steering latent and the 8 latents its adapter of `rank` on `lora_span` changes most; done
    when they exist. Call it after the steering and LoRA stages."""
    device, layer, rank, lora_span = ctx.device, ctx.layer, ctx.rank, ctx.every_layer
    seed, force = ctx.seed, ctx.force

    def args() -> DashboardArgs:
        latent = steering_latent()
        spec = f"{latent},changed:8" if latent is not None else "changed:8"
        note = (
            f"Latent {latent} (listed) is the steering evaluation's latent." if latent is not None else None
        )
        return DashboardArgs(
            model_type="tiny", device=device, layer=layer, rank=rank, lora_span=lora_span, seed=seed,
            latents=spec, note=note, progress=False, overwrite=force,
        )  # fmt: skip

    def done() -> bool:
        try:
            ref = resolve_sae("tiny", layer=layer)
            adapter = resolve_adapter("tiny", ref, None, AdapterFilter(rank, lora_span))
        except FileNotFoundError:
            return False
        folder = output_folder(args(), sae_tag("tiny", ref), adapter_label(adapter), adapter)
        return (folder / "run.json").exists()

    title = "latent dashboards (steering latent and the latents the adapter changes most)"
    return title, (not force and done()), lambda: run_dashboard(args())


__all__ = [
    "MAX_CONTEXTS",
    "DashboardArgs",
    "dashboard_adapter",
    "demo_stage",
    "run_dashboard",
    "steering_latent",
]
