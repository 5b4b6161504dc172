"""`run_dark_matter`: every analysis of the Dark Matter paper over a width sweep (and a k sweep) of SAEs of
one model, plus base vs LoRA-adapted for one SAE; numbers into data/dark_matter/<model>/, figures into
plots/dark_matter/<model>/. `make demo` calls it on the built-in model's SAEs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lorasae.core import paths
from lorasae.core.atomic import atomic_write_json, atomic_write_text, read_output_json
from lorasae.core.losses import fvu
from lorasae.darkmatter import figures
from lorasae.darkmatter.downstream import component_ce
from lorasae.darkmatter.error_saes import train_error_saes, write_linear_map
from lorasae.darkmatter.info import SAEInfo
from lorasae.darkmatter.linear import analyze_linear, fit_linear, r2, train_test_rows
from lorasae.darkmatter.load import (
    _load_model_and_sae,
    analysis_ctx_len,
    get_sae_info,
    info_key,
    token_chunks,
)
from lorasae.darkmatter.powerlaw import fit_power_law
from lorasae.darkmatter.pursuit import pursuit_reconstruction
from lorasae.darkmatter.report import report_markdown
from lorasae.darkmatter.synthetic import validate
from lorasae.darkmatter.tokens import (
    StreamUse,
    TokenRegion,
    adapter_stream_use,
    analysis_region,
    sae_stream_use,
)
from lorasae.evals.identity import done_already, eval_identity, write_eval_record
from lorasae.model.load import model_key, special_token_ids
from lorasae.plotting._common import figure_paths


@dataclass
class DarkMatterSettings:
    """How much of each analysis to run (the defaults fit the built-in model on a CPU in minutes)."""

    num_tokens: int = 50_000
    """Tokens in each SAEInfo (the paper fits W* on 150k and scores on held-out ones)."""
    train_fraction: float = 0.5
    """Share of the SAEInfo's tokens that fit W* (the rest score every number)."""
    pursuit_tokens: int = 2_000
    """Held-out tokens that gradient pursuit runs on."""
    ce_chunks: int = 32
    """Chunks of the downstream-CE evaluation (right after the SAEInfo's chunks: no token of them fit W*)."""
    split: str = "random"
    """How the SAEInfo's tokens split into fit and held-out (`linear.SPLITS`): `random` (seeded, the
    original's) or `contiguous` (the first `train_fraction` fit)."""
    downstream: str | None = None
    """Downstream-CE protocol (`downstream.PROTOCOLS`); None: `clean_prefix_200` (the original's) where the
    context has ≥ 256 positions, else `all_positions`."""
    error_sae_expansions: tuple[int, ...] = (1, 2, 4, 8)
    """Widths (× d_model) of the SAEs trained on the linear and on the nonlinear error."""
    error_sae_steps: int = 500
    """Optimiser steps of each error SAE (1024 tokens a step, through train_sae.py on the training split)."""
    dataset: str | None = None
    """Text source of the tokens (default: the model's, as every script)."""
    batch_size: int = 8
    """Sequences per model forward."""
    device: str = "cpu"
    seed: int = 42
    progress: bool = True


def _label(info: SAEInfo) -> str:
    k = info.meta.get("k")
    return f"{figures.width_label(info.d_sae)}" + (f" k={k}" if k else "")


def _region(uses: Sequence[StreamUse], s: DarkMatterSettings, ctx_len: int, tokenizer) -> TokenRegion:
    """The SAEInfo's chunks, then the downstream-CE chunks, after every token the SAEs and adapter read."""
    info_chunks = max(1, -(-s.num_tokens // ctx_len))
    return analysis_region(list(uses), ctx_len, info_chunks + s.ce_chunks, tokenizer.bos_token_id is not None)


def analyze_sae(
    model_name: str,
    source: str,
    s: DarkMatterSettings,
    adapter: str | Path | None = None,
    uses: Sequence[StreamUse] = (),
    chunks: dict | None = None,
    forwards: dict | None = None,
):
    """(row of numbers, SAEInfo, fitted W*) for one SAE: linear analysis, gradient pursuit, downstream CE,
    on the tokens after what `uses` read (`chunks` caches the packed region between SAEs, `forwards` the
    first SAEInfo per region, layer and adapter, whose model forward the next SAEs' SAEInfos reuse)."""
    loaded = _load_model_and_sae(model_name, source, s.device, adapter)
    model, tokenizer, sae, layer = loaded
    ctx_len = analysis_ctx_len(model)
    region = _region(uses, s, ctx_len, tokenizer)
    chunks = {} if chunks is None else chunks
    if region not in chunks:
        chunks[region] = token_chunks(
            model_name, tokenizer, region.count * ctx_len, s.dataset, ctx_len, s.seed, region.start
        )
    info_chunks = region.count - s.ce_chunks
    forwards = {} if forwards is None else forwards
    same_forward = (region, layer, str(adapter) if adapter else None)
    info = get_sae_info(model_name, source, info_chunks * ctx_len, s.dataset, s.device, adapter, seed=s.seed,
                        batch_size=s.batch_size, loaded=loaded, progress=s.progress, start=region.start,
                        chunks=chunks[region][:info_chunks], ctx_len=ctx_len,
                        clean=forwards.get(same_forward))  # fmt: skip
    forwards.setdefault(same_forward, info)
    report, lin = analyze_linear(info, s.train_fraction, s.device, s.split, s.seed)
    _, test = train_test_rows(len(info), s.train_fraction, s.split, s.seed)
    rows = test[: s.pursuit_tokens]
    x = info.x[rows]
    x_p = pursuit_reconstruction(sae, x, info.l0[rows], progress=s.progress)
    fvu_sae, fvu_p = float(fvu(x, info.x_hat[rows])), float(fvu(x, x_p))
    ce = component_ce(model, sae, lin, chunks[region][info_chunks:], layer, special_token_ids(tokenizer),
                      s.batch_size, s.downstream)  # fmt: skip
    row = {
        "source": source, "label": _label(info), "width": info.d_sae, "k": info.meta.get("k"),
        "mean_l0": float(info.l0.double().mean()), **report.as_dict(),
        "pursuit_fvu": fvu_p, "sae_fvu_on_pursuit_tokens": fvu_sae, "encoder_error": fvu_sae - fvu_p,
        "ce": ce, "adapter": str(adapter) if adapter else None, "tokens": region.as_dict(),
    }  # fmt: skip
    return row, info, lin


def token_r2_matrix(
    infos: Sequence[SAEInfo], train_fraction: float, split: str = "random", seed: int = 0
) -> np.ndarray:
    """R²[i, j] of SAE j's per-token ‖e‖² from a linear function of SAE i's, fitted on the train tokens
    and scored on the held-out ones (all SAEInfos hold the same tokens)."""
    n = len(infos[0])
    if any(len(i) != n for i in infos):
        raise ValueError("the SAEInfos hold different tokens; build them on the same token set")
    tr, te = train_test_rows(n, train_fraction, split, seed)
    norms = [i.error.pow(2).sum(1).double() for i in infos]
    out = np.zeros((len(infos), len(infos)))
    for a, na in enumerate(norms):
        for b, nb in enumerate(norms):
            lin = fit_linear(na[tr, None], nb[tr])
            out[a, b] = r2(nb[te], lin(na[te, None]))
    return out


def run_dark_matter(
    model_name: str,
    width_sources: Sequence[str],
    k_sources: Sequence[str] = (),
    lora_source: str | None = None,
    adapter: str | Path | None = None,
    settings: DarkMatterSettings | None = None,
    out: Path | None = None,
    variant: str = "",
    overwrite: bool = False,
) -> dict:
    """Every analysis over `width_sources` (one family at fixed k, widths ascending after sorting) and
    `k_sources` (one width, several k); base vs LoRA-adapted for `lora_source` with `adapter` (skipped
    when either is None). Numbers into `out` (default data/dark_matter/<model>/), figures into
    plots/dark_matter/<model>[__<variant>]/. Returns the summary written to
    `<out>/results[__<variant>].json` (`variant`: the settings off the script's defaults, `cli.result_variant`).
    An identical rerun (the results' run record names the same run) is skipped, saying so, unless
    `overwrite`; the summary is then read back."""
    s = settings or DarkMatterSettings()
    key = model_key(model_name)
    out = Path(out) if out is not None else paths.dark_matter_dir(key)
    sources = dict.fromkeys([*width_sources, *k_sources, *([lora_source] if lora_source else [])])
    settings_ = {**asdict(s), "width_sources": list(width_sources), "k_sources": list(k_sources)}
    identity = eval_identity(
        model_name, list(sources), adapter, settings_ | {"lora_source": lora_source}, variant
    )
    results_file = out / paths.dark_matter_results_path(key, variant).name
    if done_already("dark matter", results_file, identity, overwrite):
        return read_output_json(results_file)
    plots = paths.dark_matter_plots_dir(key, variant=variant)
    began = time.perf_counter()
    cache: dict[str, tuple[dict, SAEInfo, object]] = {}
    uses = [u for u in [*map(sae_stream_use, sources), adapter_stream_use(adapter)] if u is not None]
    chunks: dict = {}
    forwards: dict = {}

    def analyzed(source: str):
        if source not in cache:
            cache[source] = analyze_sae(model_name, source, s, None, uses, chunks, forwards)
            print(f"dark matter: {cache[source][0]['label']}: FVU {cache[source][0]['fvu']:.3f}, "
                  f"vector R² {cache[source][0]['vector_r2']:.3f}, norm R² {cache[source][0]['norm_r2']:.3f}",
                  flush=True)  # fmt: skip
        return cache[source]

    width_rows = sorted((analyzed(src) for src in width_sources), key=lambda t: t[0]["width"])
    k_rows = sorted((analyzed(src) for src in k_sources), key=lambda t: t[0]["k"] or 0)
    summary: dict = {"model": model_name, "settings": asdict(s), "width_sweep": [r for r, _, _ in width_rows],
                     "k_sweep": [r for r, _, _ in k_rows], "figures": []}  # fmt: skip
    first_row = (width_rows or k_rows)[0][0]
    summary["tokens"] = first_row["tokens"]
    summary["split"] = {"kind": s.split, "seed": s.seed, "train_fraction": s.train_fraction}
    summary["downstream_protocol"] = first_row["ce"]["protocol"]
    title = f"{key}, layer {width_rows[0][1].meta['layer'] if width_rows else '?'}"
    draws: list[tuple[str, Callable]] = []  # (stem, draw(inputs)): drawn once the results file is written

    def later(draw: Callable, *args, stem: str) -> None:
        draws.append((stem, lambda inputs: draw(*args, stem=stem, inputs=inputs)))

    if len(width_rows) >= 3:
        ws = [r["width"] for r, _, _ in width_rows]
        fits = {
            q: fit_power_law(ws, [r[q] for r, _, _ in width_rows])
            for q in ("fvu", "linear_fvu", "nonlinear_fvu")
        }
        summary["power_laws"] = {q: f.as_dict() for q, f in fits.items()}
        later(
            figures.plot_decomposition,
            [r for r, _, _ in width_rows],
            fits,
            plots,
            f"{title}: FVU decomposition at k={width_rows[0][0]['k']}",
            stem="decomposition",
        )
    if len(width_rows) >= 2:
        matrix = token_r2_matrix([i for _, i, _ in width_rows], s.train_fraction, s.split, s.seed)
        summary["per_token_r2"] = {
            "labels": [r["label"] for r, _, _ in width_rows],
            "matrix": matrix.tolist(),
        }
        later(figures.plot_token_r2, matrix, summary["per_token_r2"]["labels"], plots,
              f"{title}: per-token ‖e‖² across widths", stem="per_token_r2")  # fmt: skip
    widths_seen = {r["source"] for r, _, _ in width_rows}
    all_rows = [r for r, _, _ in width_rows] + [r for r, _, _ in k_rows if r["source"] not in widths_seen]
    later(
        figures.plot_downstream,
        all_rows,
        plots,
        f"{title}: CE with the error components",
        stem="downstream_ce",
    )
    # SAEs on the error components of the middle SAE of the width sweep (or the first SAE given)
    # (through train_sae.py with --hidden_modification, W* and the SAE from the file written here)
    ref_row, ref_info, ref_lin = (width_rows or k_rows)[len(width_rows or k_rows) // 2]
    map_key = info_key(model_name, ref_row["source"], None, layer=ref_info.meta["layer"], num_tokens=s.num_tokens,
                       dataset=s.dataset, seed=s.seed, train_fraction=s.train_fraction, split=s.split,
                       start=ref_row["tokens"]["start"])  # fmt: skip
    map_file = write_linear_map(
        paths.dark_matter_map_path(key, map_key), ref_lin, ref_info, ref_row["source"], model_name
    )
    began_error_saes = time.perf_counter()
    results = train_error_saes(
        model_name, map_file, ref_info, ref_lin, list(s.error_sae_expansions), int(ref_row["k"] or 32),
        s.error_sae_steps, s.train_fraction, s.dataset, s.device, s.seed, s.split,
        after_chunks=int(ref_row["tokens"]["start"]) + int(ref_row["tokens"]["count"]),
    )  # fmt: skip
    summary["error_saes"] = {
        "of": ref_row["label"], "map_file": str(map_file), "results": [asdict(r) for r in results],
        "seconds": round(time.perf_counter() - began_error_saes, 1),
    }  # fmt: skip
    later(figures.plot_error_saes, summary["error_saes"]["results"], plots,
          f"{title}: SAEs on the error parts of {ref_row['label']}", stem="error_saes")  # fmt: skip
    summary["synthetic"] = validate()
    later(figures.plot_synthetic, summary["synthetic"], plots, stem="synthetic")
    if lora_source is not None and adapter is not None:
        base_row = analyzed(lora_source)[0]
        lora_row = analyze_sae(model_name, lora_source, s, adapter, uses, chunks, forwards)[0]
        summary["base_vs_lora"] = {"base": base_row, "lora": lora_row}
        later(figures.plot_base_vs_lora, base_row, lora_row, plots,
              f"{title}: {base_row['label']} on the base vs LoRA model", stem="base_vs_lora")  # fmt: skip
    summary["figures"] = [str(p) for stem, _ in draws for p in figure_paths(plots, stem)]
    summary["seconds"] = round(time.perf_counter() - began, 1)
    results = atomic_write_json(results_file, summary)
    atomic_write_text(results.with_suffix(".md"), report_markdown(summary))
    for _, draw in draws:  # each figure's run record names the results file it shows
        draw([results])
    write_eval_record(results, "dark_matter", identity)  # last: the run's record
    print(report_markdown(summary), flush=True)
    return summary
