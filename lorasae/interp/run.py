"""`eval/interp_analysis/run.py`: find the SAE and its adapter (the store), run the analysis on the
validation chunks every script shares, write the JSON record, print the tables, draw the two figures.
`demo_stage` is the same run as one stage of `make demo`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from lorasae.core import paths
from lorasae.core.atomic import atomic_write_json, read_output_json
from lorasae.core.cli import CommonArgs, SaeChoiceArgs, field, parse_count
from lorasae.core.gap import gap_closed
from lorasae.core.records import RECORD_SUFFIX
from lorasae.core.runtime import parse_device, seed_everything, setup_environment
from lorasae.evals.capabilities import consumer
from lorasae.evals.identity import done_already, eval_identity, write_eval_record
from lorasae.evals.shape import DemoContext, Stage
from lorasae.model.data import default_dataset, load_token_split
from lorasae.model.defaults import (
    default_ctx_len,
    default_num_val_tokens,
    default_sae_layer,
    default_val_batch_size,
)
from lorasae.model.load import model_key, model_shape, special_token_ids
from lorasae.sae.splice import splice_fn
from lorasae.store import (
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


@dataclass
class InterpArgs(AdapterChoiceArgs, SaeChoiceArgs, CommonArgs):
    """The interpretability analysis of the original repository (`interp_analysis/`) for one SAE and its
    LoRA adapter."""

    adapter: str | None = field(
        default=None,
        help=adapter_help(
            "LoRA adapter folder (PEFT format). Default: the default adapter (of --rank and --lora_span "
            "when given)."
        ),
    )

    num_tokens: int | None = field(default=None, type=parse_count)
    """Validation tokens analysed. Default: the trainers' validation split (1M tokens; 8,192 for small
    models), so the tokens are held out from SAE and LoRA training."""

    ctx_len: int | None = None
    """Tokens per sequence. Default: the trainers' (1024, capped at the model's context)."""

    batch_size: int | None = None
    """Sequences per forward pass. Default: the trainers' validation batch."""

    confidence: float = 0.90
    """Confidence of the bootstrap intervals (over sequences) of LoRA − base."""

    resamples: int = 2000
    """Bootstrap resamples."""

    plots: bool = True
    """Draw the two figures into plots/."""

    overwrite: bool = False
    """Redo an analysis whose result exists with a run record of the same run (the same SAE, adapter and
    their weights, model and settings); by default such an identical rerun is skipped, saying so."""

    progress: bool = True
    """Show a progress bar."""


def interp_adapter(args: InterpArgs, ref: SaeRef) -> Path:
    """The adapter the analysis runs with: --adapter, else the store's default adapter of the SAE (of --rank
    and --lora_span when given); checked to pair with the SAE's weights."""
    return resolve_adapter(args.model_name, ref, args.adapter, args.adapter_filter())


def adapter_label(adapter: Path) -> str:
    """`peft_<a>-<b>_rank_<r>` for adapters in the project's layout, else the folder's name."""
    if adapter.name.startswith("rank_") and adapter.parent.name.startswith("peft_"):
        return f"{adapter.parent.name}_{adapter.name}"
    return adapter.name


def output_path(model_name: str, ref: SaeRef, adapter: Path) -> Path:
    """Where the record of this SAE and adapter goes (`paths.interp_json_path`)."""
    tag = SaeRun((ref,)).tag(default_layer=default_sae_layer(model_shape(model_name).n_layers))
    return paths.interp_json_path(model_key(model_name), tag, adapter_label(adapter))


def run_interp(args: InterpArgs, figure_variant: str | None = None) -> Path:
    """The analysis end to end; returns the JSON record's path. An identical rerun (the result's run record
    names the same run) is skipped, saying so, unless `--overwrite`; its tables and figures are shown from
    the result. The figures are named after the result (`<model>_interp_<kind>__<sae_tag>__<adapter>`), or
    `figure_variant` ('' : the plain names, the demo's)."""
    from lorasae.interp.pipeline import analyse, summarise_metrics

    setup_environment(wandb=args.wandb)
    seed_everything(args.seed)
    name = args.model_name
    shape = model_shape(name)
    ref = chosen_sae(args)
    adapter = interp_adapter(args, ref)
    print(adapter_line(adapter, "interp"))
    bundle = load_bundle(
        name, [ref], adapter, device=parse_device(args.device), dtype=args.dtype, suite=consumer("interp")
    )
    layer, sae = bundle.layer, bundle.sae
    ctx_len = args.ctx_len or default_ctx_len(shape.max_positions)
    num_tokens = args.num_tokens or default_num_val_tokens(shape.d_model)
    batch_size = args.batch_size or default_val_batch_size(shape.d_model, ctx_len)
    dataset = args.dataset or default_dataset(name)
    chunks = load_token_split(dataset, bundle.tokenizer, ctx_len, num_tokens, args.seed).val
    special = special_token_ids(bundle.tokenizer)
    print(
        f"model {name} | SAE {ref.source} (layer {layer}) | adapter {adapter} | "
        f"{len(chunks)} sequences × {ctx_len} tokens of {dataset}"
    )
    out = output_path(name, ref, adapter)
    settings = {k: v for k, v in vars(args).items() if k not in ("model", "sae", "adapter")}
    settings |= {"layer": layer, "dataset": dataset, "ctx_len": ctx_len, "num_tokens": num_tokens}
    identity = eval_identity(name, [ref.source], adapter, settings)
    if done_already("interp", out, identity, args.overwrite):
        _report(read_output_json(out), out, args, figure_variant)
        return out
    began = time.perf_counter()
    raw = analyse(
        bundle.model,
        chunks,
        list(range(layer, shape.n_layers)),
        lambda ids: {layer: splice_fn(sae, ids, special)},
        batch_size,
        progress=args.progress,
    )
    record = {
        "model": name,
        "sae": ref.source,
        "sae_tag": output_path(name, ref, adapter).parent.name,
        "layer": layer,
        "adapter": str(adapter),
        "dataset": dataset,
        "ctx_len": ctx_len,
        "seconds": None,
        **summarise_metrics(raw, layer, args.confidence, args.resamples, args.seed),
    }
    record["seconds"] = round(time.perf_counter() - began, 1)
    atomic_write_json(out, record)
    write_eval_record(out, "interp_result", identity)
    print(f"wrote {out}")
    _report(record, out, args, figure_variant)
    return out


def _report(record: dict, out: Path, args: InterpArgs, figure_variant: str | None) -> None:
    """The tables, and the figures (named after the result `out`, or `figure_variant` when given)."""
    from lorasae.interp.plots import plot_interp

    print_tables(record)
    if args.plots:
        variant = f"{out.parent.name}__{out.stem}" if figure_variant is None else figure_variant
        for files in plot_interp(record, variant=variant, inputs=[out]).values():
            print(f"  figure: {next(f for f in files if f.suffix == '.png')}")


def format_tables(record: dict, tablefmt: str = "simple") -> str:
    """Per layer: base, LoRA and LoRA − base [interval] of both metrics; then the CEs and the per-token
    loss change (`tablefmt="github"` for README's results block)."""
    pct = round(100 * record["l2"]["lora_minus_base"]["confidence"])
    rows = []
    for i, layer in enumerate(record["layers"]):
        row = [layer, record["layers_after_sae"][i]]
        for metric in ("l2", "cosine"):
            m, d = record[metric], record[metric]["lora_minus_base"]
            row += [
                m["base"][i],
                m["lora"][i],
                f"{d['mean'][i]:+.4f} [{d['low'][i]:+.4f}, {d['high'][i]:+.4f}]",
            ]
        rows.append(row)
    headers = [
        "layer",
        "after SAE",
        "L2 base",
        "L2 LoRA",
        f"Δ L2 ({pct} %)",
        "cos base",
        "cos LoRA",
        f"Δ cos ({pct} %)",
    ]
    layers = tabulate(rows, headers=headers, floatfmt=".4f", tablefmt=tablefmt)
    ce, s = record["ce"], record["token_loss"]["summary"]
    gap = gap_closed(ce["clean"], ce["sae"], ce["lora_sae"], record.get("ce_gap_se"))
    loss = tabulate(
        [
            ["L_base / L_SAE / L_LoRA+SAE", f"{ce['clean']:.4f} / {ce['sae']:.4f} / {ce['lora_sae']:.4f}"],
            ["CE gap closed", gap.percent_text],
            ["tokens improved / degraded", f"{100 * s['fraction_improved']:.1f} % / {100 * s['fraction_degraded']:.1f} %"],
            ["mean Δ = L_SAE − L_LoRA+SAE", f"{s['mean_diff']:+.4f}"],
            ["abs(Δ) median / p90 / p99 / max", f"{s['median_abs_diff']:.4f} / {s['p90_abs_diff']:.4f} / {s['p99_abs_diff']:.4f} / {s['max_abs_diff']:.4f}"],
            ["tokens", s["n_tokens"]],
        ],
        headers=["per-token loss", "value"],
        tablefmt=tablefmt,
    )  # fmt: skip
    return f"{layers}\n\n{loss}"


def print_tables(record: dict) -> None:
    print(format_tables(record))


def demo_stage(ctx: DemoContext) -> Stage:
    """`make demo`'s stage (the registry's one signature, `lorasae.evals.DemoContext`): the analysis of the built-in model's
    main SAE with its default adapter of `rank` on `lora_span` (`<a>-<b>`; the paper's is every layer);
    done when that record exists. Call it after the LoRA stages (it looks the adapter up)."""
    device, layer, rank, lora_span = ctx.device, ctx.layer, ctx.rank, ctx.every_layer
    seed, force = ctx.seed, ctx.force
    args = InterpArgs(
        model_type="tiny", device=device, layer=layer, rank=rank, lora_span=lora_span, seed=seed,
        progress=False, overwrite=force,
    )  # fmt: skip

    def done() -> bool:
        try:
            ref = resolve_sae(args.model_name, layer=layer)
            adapter = resolve_adapter(args.model_name, ref, None, args.adapter_filter())
        except FileNotFoundError:
            return False
        return output_path(args.model_name, ref, adapter).exists()

    title = "interpretability analysis (activation distances, per-token loss)"
    return title, (not force and done()), lambda: run_interp(args, figure_variant="")


def find_records(model: str, base: Path | None = None) -> list[Path]:
    """Every record of `model` under `data/interp/<model>/`, oldest first (the notebook shows the newest)."""
    folder = paths.interp_dir(model_key(model), base)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("*/*.json") if not p.name.endswith(RECORD_SUFFIX)]  # not run records
    return sorted(found, key=lambda p: p.stat().st_mtime)


def main(args: InterpArgs) -> None:
    run_interp(args)


__all__ = [
    "InterpArgs",
    "adapter_label",
    "interp_adapter",
    "demo_stage",
    "find_records",
    "main",
    "output_path",
    "print_tables",
    "run_interp",
]
