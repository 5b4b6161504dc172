"""`run_dark_matter`: every analysis of the Dark Matter paper over a width sweep (and a k sweep) of SAEs of
one model, plus base vs LoRA-adapted for one SAE; numbers into data/dark_matter/<model>/, figures into
plots/dark_matter/<model>/. `make demo` calls it on the built-in model's SAEs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from lorasae import paths
from lorasae.atomic import atomic_write_json, atomic_write_text
from lorasae.darkmatter import figures
from lorasae.darkmatter.downstream import component_ce
from lorasae.darkmatter.error_saes import train_error_saes, write_linear_map
from lorasae.darkmatter.info import SAEInfo
from lorasae.darkmatter.linear import analyze_linear, fit_linear, r2, train_test_rows
from lorasae.darkmatter.load import _load_model_and_sae, get_sae_info, info_key, token_chunks
from lorasae.darkmatter.powerlaw import fit_power_law
from lorasae.darkmatter.pursuit import pursuit_reconstruction
from lorasae.darkmatter.synthetic import validate
from lorasae.losses import fvu
from lorasae.models import model_key, special_token_ids


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
    """Chunks (from the held-out end of the token set) of the downstream-CE evaluation."""
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


def analyze_sae(model_name: str, source: str, s: DarkMatterSettings, adapter: str | Path | None = None):
    """(row of numbers, SAEInfo, fitted W*) for one SAE: linear analysis, gradient pursuit, downstream CE."""
    loaded = _load_model_and_sae(model_name, source, s.device, adapter)
    model, tokenizer, sae, layer = loaded
    info = get_sae_info(model_name, source, s.num_tokens, s.dataset, s.device, adapter, seed=s.seed,
                        batch_size=s.batch_size, loaded=loaded, progress=s.progress)  # fmt: skip
    report, lin = analyze_linear(info, s.train_fraction, s.device)
    _, test = train_test_rows(len(info), s.train_fraction)
    rows = torch.arange(test.start, min(test.stop, test.start + s.pursuit_tokens))
    x = info.x[rows]
    x_p = pursuit_reconstruction(sae, x, info.l0[rows], progress=s.progress)
    fvu_sae, fvu_p = float(fvu(x, info.x_hat[rows])), float(fvu(x, x_p))
    chunks = token_chunks(model_name, tokenizer, s.num_tokens, s.dataset, int(info.meta["ctx_len"]), s.seed)
    ce = component_ce(
        model, sae, lin, chunks[-s.ce_chunks :], layer, special_token_ids(tokenizer), s.batch_size
    )
    row = {
        "source": source, "label": _label(info), "width": info.d_sae, "k": info.meta.get("k"),
        "mean_l0": float(info.l0.double().mean()), **report.as_dict(),
        "pursuit_fvu": fvu_p, "sae_fvu_on_pursuit_tokens": fvu_sae, "encoder_error": fvu_sae - fvu_p,
        "ce": ce, "adapter": str(adapter) if adapter else None,
    }  # fmt: skip
    return row, info, lin


def token_r2_matrix(infos: Sequence[SAEInfo], train_fraction: float) -> np.ndarray:
    """R²[i, j] of SAE j's per-token ‖e‖² from a linear function of SAE i's, fitted on the train tokens
    and scored on the held-out ones (all SAEInfos hold the same tokens)."""
    n = len(infos[0])
    if any(len(i) != n for i in infos):
        raise ValueError("the SAEInfos hold different tokens; build them on the same token set")
    tr, te = train_test_rows(n, train_fraction)
    norms = [i.error.pow(2).sum(1).double() for i in infos]
    out = np.zeros((len(infos), len(infos)))
    for a, na in enumerate(norms):
        for b, nb in enumerate(norms):
            lin = fit_linear(na[tr, None], nb[tr])
            out[a, b] = r2(nb[te], lin(na[te, None]))
    return out


def _table(rows: Sequence[dict]) -> str:
    head = ["SAE", "L0", "FVU", "R² e (vec)", "R² e (vec, no b)", "R² ‖e‖²", "R² ‖e‖² no b", "lin FVU",
            "nonlin FVU", "pursuit FVU", "enc err", "CE x", "CE x̂", "CE x̂+lin", "CE x̂+nonlin"]  # fmt: skip
    body = [[r["label"], r["mean_l0"], r["fvu"], r["vector_r2"], r["vector_r2_no_bias"], r["norm_r2"],
             r["norm_r2_no_bias"], r["linear_fvu"], r["nonlinear_fvu"], r["pursuit_fvu"], r["encoder_error"],
             r["ce"]["original"], r["ce"]["sae"], r["ce"]["sae+linear"], r["ce"]["sae+nonlinear"]]
            for r in rows]  # fmt: skip
    return tabulate(body, head, floatfmt=".3f", tablefmt="github")


def _baseline_table(rows: Sequence[dict]) -> str:
    names = list(rows[0]["baseline_norm_r2"])
    body = [
        [r["label"], r["norm_r2"], *[r["baseline_norm_r2"].get(n, float("nan")) for n in names]] for r in rows
    ]
    return tabulate(
        body, ["SAE", "R² ‖e‖² from x", *[f"from {n}" for n in names]], floatfmt=".3f", tablefmt="github"
    )


def run_dark_matter(
    model_name: str,
    width_sources: Sequence[str],
    k_sources: Sequence[str] = (),
    lora_source: str | None = None,
    adapter: str | Path | None = None,
    settings: DarkMatterSettings | None = None,
    out: Path | None = None,
) -> dict:
    """Every analysis over `width_sources` (one family at fixed k, widths ascending after sorting) and
    `k_sources` (one width, several k); base vs LoRA-adapted for `lora_source` with `adapter` (skipped
    when either is None). Numbers into `out` (default data/dark_matter/<model>/), figures into
    plots/dark_matter/<model>/. Returns the summary written to `<out>/results.json`."""
    s = settings or DarkMatterSettings()
    key = model_key(model_name)
    out = Path(out) if out is not None else paths.dark_matter_dir(key)
    plots = paths.dark_matter_plots_dir(key)
    began = time.perf_counter()
    cache: dict[str, tuple[dict, SAEInfo, object]] = {}

    def analyzed(source: str):
        if source not in cache:
            cache[source] = analyze_sae(model_name, source, s, None)
            print(f"dark matter: {cache[source][0]['label']}: FVU {cache[source][0]['fvu']:.3f}, "
                  f"vector R² {cache[source][0]['vector_r2']:.3f}, norm R² {cache[source][0]['norm_r2']:.3f}",
                  flush=True)  # fmt: skip
        return cache[source]

    width_rows = sorted((analyzed(src) for src in width_sources), key=lambda t: t[0]["width"])
    k_rows = sorted((analyzed(src) for src in k_sources), key=lambda t: t[0]["k"] or 0)
    summary: dict = {"model": model_name, "settings": asdict(s), "width_sweep": [r for r, _, _ in width_rows],
                     "k_sweep": [r for r, _, _ in k_rows], "figures": []}  # fmt: skip
    title = f"{key}, layer {width_rows[0][1].meta['layer'] if width_rows else '?'}"
    if len(width_rows) >= 3:
        ws = [r["width"] for r, _, _ in width_rows]
        fits = {
            q: fit_power_law(ws, [r[q] for r, _, _ in width_rows])
            for q in ("fvu", "linear_fvu", "nonlinear_fvu")
        }
        summary["power_laws"] = {q: f.as_dict() for q, f in fits.items()}
        summary["figures"] += figures.plot_decomposition(
            [r for r, _, _ in width_rows],
            fits,
            plots,
            f"{title}: FVU decomposition at k={width_rows[0][0]['k']}",
        )
    if len(width_rows) >= 2:
        matrix = token_r2_matrix([i for _, i, _ in width_rows], s.train_fraction)
        summary["per_token_r2"] = {
            "labels": [r["label"] for r, _, _ in width_rows],
            "matrix": matrix.tolist(),
        }
        summary["figures"] += figures.plot_token_r2(matrix, summary["per_token_r2"]["labels"], plots,
                                                    f"{title}: per-token ‖e‖² across widths")  # fmt: skip
    widths_seen = {r["source"] for r, _, _ in width_rows}
    all_rows = [r for r, _, _ in width_rows] + [r for r, _, _ in k_rows if r["source"] not in widths_seen]
    summary["figures"] += figures.plot_downstream(all_rows, plots, f"{title}: CE with the error components")
    # SAEs on the error components of the middle SAE of the width sweep (or the first SAE given)
    # (through train_sae.py with --hidden_modification, W* and the SAE from the file written here)
    ref_row, ref_info, ref_lin = (width_rows or k_rows)[len(width_rows or k_rows) // 2]
    map_key = info_key(model_name, ref_row["source"], None, layer=ref_info.meta["layer"], num_tokens=s.num_tokens,
                       dataset=s.dataset, seed=s.seed, train_fraction=s.train_fraction)  # fmt: skip
    map_file = write_linear_map(
        paths.dark_matter_map_path(key, map_key), ref_lin, ref_info, ref_row["source"], model_name
    )
    began_error_saes = time.perf_counter()
    results = train_error_saes(
        model_name, map_file, ref_info, ref_lin, list(s.error_sae_expansions), int(ref_row["k"] or 32),
        s.error_sae_steps, s.train_fraction, s.dataset, s.device, s.seed,
    )  # fmt: skip
    summary["error_saes"] = {
        "of": ref_row["label"], "map_file": str(map_file), "results": [asdict(r) for r in results],
        "seconds": round(time.perf_counter() - began_error_saes, 1),
    }  # fmt: skip
    summary["figures"] += figures.plot_error_saes(
        summary["error_saes"]["results"], plots, f"{title}: SAEs on the error parts of {ref_row['label']}"
    )
    summary["synthetic"] = validate()
    summary["figures"] += figures.plot_synthetic(summary["synthetic"], plots)
    if lora_source is not None and adapter is not None:
        base_row = analyzed(lora_source)[0]
        lora_row = analyze_sae(model_name, lora_source, s, adapter)[0]
        summary["base_vs_lora"] = {"base": base_row, "lora": lora_row}
        summary["figures"] += figures.plot_base_vs_lora(
            base_row, lora_row, plots, f"{title}: {base_row['label']} on the base vs LoRA model"
        )
    summary["figures"] = [str(p) for p in summary["figures"]]
    summary["seconds"] = round(time.perf_counter() - began, 1)
    atomic_write_json(out / "results.json", summary)
    atomic_write_text(out / "results.md", report_markdown(summary))
    print(report_markdown(summary), flush=True)
    return summary


def _relative(path: str | None) -> str:
    """`path` below the output root as a relative path (README tables hold no machine's folders)."""
    if path is None:
        return "?"
    try:
        return str(Path(path).relative_to(paths.root()))
    except ValueError:
        return path


def report_markdown(summary: dict) -> str:
    """The tables of a run: per SAE, baselines, power laws, error SAEs, synthetic, base vs LoRA."""
    parts = [f"# Dark matter of SAEs: {summary['model']}"]
    for name in ("width_sweep", "k_sweep"):
        if summary.get(name):
            parts += [f"## {name.replace('_', ' ')}", _table(summary[name]), "", "R² of ‖e‖² (held out) vs baselines:",
                      _baseline_table(summary[name])]  # fmt: skip
    if "power_laws" in summary:
        body = [[q, f["c"], f["a"], f["m"]] for q, f in summary["power_laws"].items()]
        parts += [
            "## power laws y = c + a·W^m",
            tabulate(body, ["quantity", "c", "a", "m"], floatfmt=".4g", tablefmt="github"),
        ]
    if "error_saes" in summary:
        body = [
            [r["target"], r["width"], r["k"], r["train_fvu"], r.get("val_fvu"), r["test_fvu"]]
            for r in summary["error_saes"]["results"]
        ]
        head = ["target", "width", "k", "train FVU", "val FVU (all info tokens)", "test FVU (held out)"]
        parts += [
            f"## SAEs trained on the error parts of {summary['error_saes']['of']}",
            "(train_sae.py --hidden_modification linear_error|nonlinear_error --modification_file "
            f"{_relative(summary['error_saes'].get('map_file'))}, on the training tokens after the "
            "SAEInfo's; not spliced, so no CE)",
            tabulate(body, head, floatfmt=".3f", tablefmt="github"),
        ]
    if "synthetic" in summary:
        parts += [
            "## synthetic validation",
            tabulate(summary["synthetic"], "keys", floatfmt=".4f", tablefmt="github"),
        ]
    if "base_vs_lora" in summary:
        parts += [
            "## base vs LoRA-adapted model (same SAE)",
            _table([{**r, "label": name} for name, r in summary["base_vs_lora"].items()]),
        ]
    parts.append(f"\n({summary.get('seconds', 0):.0f} s)")
    return "\n\n".join(parts) + "\n"
