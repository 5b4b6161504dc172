"""The demo's result sections, each a title, what the paper claims, and a table read from the outputs: the
LoRA runs, the e2e speed-up, the multiple-SAE experiment, SAE-Bench base vs LoRA, steering, the
benchmarks, the interpretability analysis, Dark Matter and the dictionaries at matched L0. Printed at the end of `make demo` and written
into README's results block (`lorasae.demo.readme`). A section whose outputs are missing is left out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from lorasae.core import paths

MODEL = "tiny"


@dataclass(frozen=True)
class Section:
    title: str
    claim: str
    """What the paper (or the original project) reports, for the reader to compare with the table."""
    table: str


def _lora_runs(model: str, fmt: str) -> str:
    from lorasae.results.summary import results_table

    return results_table(model, fmt=fmt)


def _speedup(model: str, fmt: str) -> str:
    from lorasae.results.summary import speedup_table

    return speedup_table(model, fmt=fmt)


def _multi_sae(model: str, fmt: str) -> str:
    from lorasae.core.gap import format_gap_closed
    from lorasae.plotting import multi_sae_table
    from lorasae.results import load_results_csv, select_model

    table = multi_sae_table(select_model(load_results_csv(None), model))
    table = table.astype({"rank": int, "num_examples": int})
    flags = table.pop("gap_flag")  # a flagged run prints lorasae.core.gap's text, not a percentage
    table["% gap closed"] = [
        format_gap_closed(p / 100, f) for p, f in zip(table.pop("pct_gap_closed"), flags)
    ]
    return tabulate(
        table, headers="keys", showindex=False, floatfmt=("", "", "", "", "", ".4f", ".4f", ".4f", ".1f"),
        tablefmt=fmt,
    )  # fmt: skip


def _saebench(model: str, fmt: str) -> str:
    from lorasae.saebench.comparison import comparison_table, load_results

    results = load_results(model)
    if not {"base", "peft"} <= set(results):
        raise FileNotFoundError("SAE-Bench results of the base and the LoRA-merged model")
    return comparison_table(results, tablefmt=fmt)


def _steering(model: str, fmt: str) -> str:
    from lorasae.core.atomic import read_output_json
    from lorasae.results import pick_steering_result
    from lorasae.steering.final_eval import summary_table

    path = pick_steering_result(model)
    record = read_output_json(path, "eval/steering/run_eval.py") if path is not None else None
    if not record:
        raise FileNotFoundError("steering results")
    adapter = Path(record["adapter"])
    if adapter.is_relative_to(paths.root()):
        adapter = adapter.relative_to(paths.root())
    head = f"latent {record['latent']}, alpha {record['alpha']:g} ({record['mode']}), adapter `{adapter}`"
    kinds = [k for k in ("base", "lora") if k in record["logliks"]]
    return head + "\n\n" + summary_table(record["summary"], kinds, record["confidence"], tablefmt=fmt)


def _benchmarks(model: str, fmt: str) -> str:
    from lorasae.lmeval.comparison import comparison_table

    text = comparison_table(model, tablefmt=fmt)
    if text.startswith("(no benchmark results"):
        raise FileNotFoundError(text)
    return text


def _interp(model: str, fmt: str) -> str:
    from lorasae.core.atomic import read_output_json
    from lorasae.interp.run import find_records, format_tables

    records = find_records(model)
    if not records:
        raise FileNotFoundError("interpretability records")
    return format_tables(read_output_json(records[-1], "eval/interp_analysis/run.py"), fmt)


def _dark_matter(model: str, fmt: str) -> str:
    from lorasae.core.atomic import read_output_json
    from lorasae.core.result_choice import find_result
    from lorasae.darkmatter.pipeline import report_markdown

    path = find_result(paths.dark_matter_dir(model), "results", f"Dark Matter results of {model}")
    summary = read_output_json(path, "eval/dark_matter/run.py", True) if path is not None else None
    if summary is None:
        raise FileNotFoundError("Dark Matter results")
    body = report_markdown(summary).split("\n", 1)[-1]  # the first line is the report's own title
    return body.replace("\n## ", "\n##### ").removeprefix("## ").strip()


def _dictionaries(model: str, fmt: str) -> str:
    from lorasae.dictcompare.table import format_table, load_comparison

    return format_table(load_comparison(None, model), fmt)


SECTIONS: list[tuple[str, str, Callable[[str, str], str]]] = [
    ("LoRA runs (every run of the demo)",
     "LoRA closes 30–55 % of the CE gap of Gemma Scope SAEs; more with rank, less per layer alone.",
     _lora_runs),
    ("e2e speed-up",
     "TopK + LoRA reaches the e2e SAE's CE 3–20× sooner on Gemma-2-2B.", _speedup),
    ("Several SAEs at once",
     "SAEs at several layers spliced together: one LoRA closes a large share of their joint gap.", _multi_sae),
    ("SAE-Bench: base vs LoRA-merged model",
     "The adapted model scores the same or better on SAEBench's evals (the SAE is unchanged).", _saebench),
    ("Steering (LoRA − base Δ with 90 % intervals)",
     "Steering a latent raises its concept's likelihood at least as much in the adapted model, with no "
     "larger side effect.", _steering),
    ("Benchmarks (base / LoRA × without / with the SAE)",
     "With the SAE spliced, the adapted model recovers much of the benchmark accuracy the SAE loses; "
     "without the SAE it stays close to the base model.", _benchmarks),
    ("Interpretability analysis (activations after the SAE, per-token loss)",
     "The original's interp_analysis: the adapted model's later activations move toward the clean ones.",
     _interp),
    ("Dark Matter of SAEs",
     "Linear prediction of the SAE error: vector R² ≈ 0.5, norm R² > 0.9; nonlinear error roughly "
     "constant with width.", _dark_matter),
    ("Dictionaries at matched L0: LoRA vs KL fine-tuning",
     "LoRA on TopK SAEs closes 30–55 % of the CE gap (the paper); a short KL + MSE fine-tune of the SAE "
     "closes 20–50 %, and LoRA, KL fine-tuning and linear adapters give similar gains that do not add up "
     "(Karvonen, arXiv 2503.17272).", _dictionaries),
]  # fmt: skip


def sections(model: str = MODEL, fmt: str = "github") -> list[Section]:
    out = []
    for title, claim, table in SECTIONS:
        try:
            out.append(Section(title, claim, table(model, fmt)))
        except (FileNotFoundError, LookupError, KeyError, ValueError) as err:
            print(f"(results section {title!r} left out: {str(err).splitlines()[0]})")
    return out


def print_eval_tables(model: str = MODEL) -> None:
    """The sections after the LoRA-runs and speed-up tables (those `report.print_results_table` prints)."""
    printed = {title for title, _, _ in SECTIONS[:2]}
    for section in sections(model, fmt="simple"):
        if section.title not in printed:
            print(f"\n{section.title}\n{section.table}")
