"""The demo's "what it showed" bullets, generated from the same outputs as its tables, each with a verdict
against the paper computed by a stated rule (`RULES`). The formatters (`gap_claim`, `speedup_claim`, ...)
take plain numbers, so they are tested on fixed inputs; `claims(model)` reads the outputs and leaves out a
bullet whose outputs are missing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

RULES = (
    "Verdicts follow fixed rules (`lorasae/demo/claims.py`): gap closed *agrees* when every run closes a "
    "positive share of the gap and the mean share at the highest rank exceeds the lowest rank's; several "
    "SAEs *agree* when the joint run closes a positive share; the e2e speed-up *agrees* when its smallest "
    "value is ≥ 3× (the paper's 3–20×), is *smaller* when above 1× only; SAE-Bench *agrees* when the "
    "CE with the SAE falls on the merged model; steering *agrees* when the LoRA − base interval on the "
    "positives lies above 0, *does not show* when it lies below 0, else *no difference*; the benchmarks "
    "*agree* when with the SAE the adapter raises accuracy by more than one standard error on most tasks; "
    "interpretability *agrees* when the cosine to the clean activations rises at the last layer and tokens "
    "improve on average; Dark Matter's vector R² *agrees* within 0.5 ± 0.1, its norm R² when > 0.9."
)


@dataclass(frozen=True)
class Claim:
    title: str
    verdict: str
    text: str

    def bullet(self) -> str:
        study = f" {SCALE_STUDY_POINTER}" if self.title in SCALE_STUDIED and self.verdict != "agrees" else ""
        return f"- **{self.title}** ({self.verdict}): {self.text}{study}"


SCALE_STUDIED = ("e2e speed-up", "Steering", "Benchmarks")
"""The claims the scale study varies rank, budget and model size for (issue 30)."""
SCALE_STUDY_POINTER = "What rank/d, the training budget and model size do to it: README's scale study (`eval/scale_study/run.py`)."


def _pct(value: float) -> str:
    """A percentage to whole points, or to a tenth below 10 (so a small positive share does not read 0)."""
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"


def _pct_range(values: Sequence[float]) -> str:
    lo, hi = _pct(min(values)), _pct(max(values))
    return f"{lo} %" if lo == hi else f"{lo}–{hi} %"


def gap_claim(pcts_by_rank: dict[int, list[float]], final_top_rank: Sequence[float]) -> Claim:
    """`pcts_by_rank`: % of the CE gap closed of every run, by LoRA rank; `final_top_rank`: those of the
    final SAEs (no checkpoint) at the highest rank."""
    ranks = sorted(pcts_by_rank)
    every = [p for r in ranks for p in pcts_by_rank[r]]
    means = {r: sum(pcts_by_rank[r]) / len(pcts_by_rank[r]) for r in ranks}
    rises = len(ranks) > 1 and means[ranks[-1]] > means[ranks[0]]
    verdict = "agrees" if min(every) > 0 and rises else "does not show"
    text = f"{_pct_range(every)} of the CE gap closed over {len(every)} run{'s' if len(every) > 1 else ''}"
    if final_top_rank:
        text += f" (final SAEs at rank {ranks[-1]}: {_pct_range(final_top_rank)})"
    if len(ranks) > 1:
        text += "; mean by rank " + ", ".join(f"{r}: {_pct(means[r])} %" for r in ranks)
    return Claim("Gap closed", verdict, text + ".")


def multi_claim(layers: str, joint_l_sae: float, joint_pct: float, alone_pcts: Sequence[float]) -> Claim:
    verdict = "agrees" if joint_pct > 0 else "does not show"
    text = f"SAEs at layers {layers} together raise the CE to {joint_l_sae:.3f}; one LoRA closes {_pct(joint_pct)} %"
    if alone_pcts:
        text += " (each SAE alone: " + ", ".join(f"{_pct(p)} %" for p in alone_pcts) + ")"
    return Claim("Several SAEs at once", verdict, text + ".")


def speedup_claim(speedups: Sequence[float], not_reached: int) -> Claim:
    """`speedups`: the e2e speed-up at every target CE TopK + LoRA reached; `not_reached`: targets it missed."""
    if not speedups:
        return Claim("e2e speed-up", "does not show", "TopK + LoRA reaches none of the e2e SAE's target CEs.")
    lo, hi = min(speedups), max(speedups)
    verdict = "agrees" if lo >= 3 else "smaller" if hi > 1 else "does not show"
    span = f"{lo:.1f}×" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}–{hi:.1f}×"
    text = f"{span} where TopK + LoRA reaches the e2e SAE's CE (paper: 3–20×)"
    if not_reached:
        text += f"; {not_reached} of the e2e SAE's {len(speedups) + not_reached} target CEs are not reached"
    return Claim("e2e speed-up", verdict, text + ".")


def saebench_claim(l_sae: float, l_lora: float) -> Claim:
    verdict = "agrees" if l_lora < l_sae else "does not show"
    return Claim("SAE-Bench", verdict, f"CE with the SAE {l_sae:.3f} → {l_lora:.3f} on the merged model.")


def steering_claim(alpha: float, mean: float, low: float, high: float, confidence: float) -> Claim:
    verdict = "agrees" if low > 0 else "does not show" if high < 0 else "no difference"
    text = (
        f"alpha {alpha:g}; LoRA − base change of the positives' log-likelihood {mean:+.2f} "
        f"[{low:+.2f}, {high:+.2f}] ({confidence:.0%} interval)."
    )
    return Claim("Steering", verdict, text)


def benchmarks_claim(rows: Sequence[tuple[str, float, float, float | None]]) -> Claim:
    """`rows`: (task, accuracy of base + SAE, of LoRA + SAE, the larger standard error or None)."""
    better = [t for t, b, lo, se in rows if se is not None and lo - b > se]
    verdict = "agrees" if len(better) > len(rows) / 2 else "does not show"
    deltas = ", ".join(f"{t} {lo - b:+.2f}" for t, b, lo, _ in rows)
    text = f"with the SAE spliced, LoRA − base accuracy: {deltas}; {len(better)} of {len(rows)} by more than one standard error."
    return Claim("Benchmarks", verdict, text)


def interp_claim(
    d_l2: Sequence[float], d_cos_last: float, fraction_improved: float, mean_diff: float
) -> Claim:
    verdict = (
        "agrees"
        if d_cos_last > 0 and mean_diff > 0
        else "partly"
        if d_cos_last > 0 or mean_diff > 0
        else "does not show"
    )
    text = (
        f"LoRA − base L2 distance to the clean activations after the SAE {min(d_l2):+.3f} … {max(d_l2):+.3f}, "
        f"cosine at the last layer {d_cos_last:+.3f}; {100 * fraction_improved:.0f} % of tokens improve, "
        f"{mean_diff:+.2f} nats on average."
    )
    return Claim("Interpretability", verdict, text)


def dark_matter_claim(
    vector_r2: Sequence[float], norm_r2: Sequence[float], nonlinear_fvu: Sequence[float]
) -> Claim:
    vec = "agrees" if all(abs(v - 0.5) <= 0.1 for v in vector_r2) else "differs"
    norm = "agrees" if min(norm_r2) > 0.9 else "lower"
    text = (
        f"vector R² of the error {min(vector_r2):.2f}–{max(vector_r2):.2f} (paper ≈ 0.5: {vec}); norm R² "
        f"{min(norm_r2):.2f}–{max(norm_r2):.2f} (paper > 0.9: {norm}); nonlinear FVU "
        f"{min(nonlinear_fvu):.2f}–{max(nonlinear_fvu):.2f} over the SAEs."
    )
    return Claim("Dark Matter", f"vector R² {vec}, norm R² {norm}", text)


# --- reading the outputs -----------------------------------------------------------------------------


def _gap(model: str) -> Claim:
    from lorasae.results.summary import _latest_runs

    df = _latest_runs(model)
    df = df[df["frac_gap_closed"].notna()]
    if df.empty:
        raise LookupError("no LoRA run with a gap")
    by_rank = {int(r): list(100 * g["frac_gap_closed"]) for r, g in df.groupby("rank")}
    top = max(by_rank)
    final = df[(df["rank"] == top) & ~df["sae_tag"].astype(str).str.contains("pct")]
    return gap_claim(by_rank, list(100 * final["frac_gap_closed"]))


def _multi(model: str) -> Claim:
    from lorasae.plotting import multi_sae_table
    from lorasae.results import load_results_csv, select_model

    table = multi_sae_table(select_model(load_results_csv(None), model))
    joint, alone = table.iloc[0], table.iloc[1:]
    return multi_claim(str(joint["sae_layers"]), float(joint["L_SAE"]), float(joint["pct_gap_closed"]),
                       [float(p) for p in alone["pct_gap_closed"]])  # fmt: skip


def _speedup(model: str) -> Claim:
    from lorasae.results.speedup import compute_speedup

    table = compute_speedup(None, model)
    ok = table[table["status"] == "ok"]
    return speedup_claim([float(s) for s in ok["speedup"]], len(table) - len(ok))


def _saebench(model: str) -> Claim:
    from lorasae.saebench.comparison import gap_closed, load_results

    found = gap_closed(load_results(model))
    if found is None:
        raise LookupError("SAE-Bench core results of base and LoRA")
    return saebench_claim(found["L_SAE"], found["L_LoRA"])


def _steering(model: str) -> Claim:
    from lorasae.core.atomic import read_output_json
    from lorasae.results import pick_steering_result

    path = pick_steering_result(model)
    if path is None:
        raise LookupError("steering results")
    record = read_output_json(path)
    iv = record["summary"]["positive"]["lora_minus_base"]
    return steering_claim(record["alpha"], iv["mean"], iv["low"], iv["high"], record["confidence"])


def _benchmarks(model: str) -> Claim:
    from lorasae.core.atomic import read_output_json
    from lorasae.lmeval.comparison import task_metrics
    from lorasae.lmeval.layout import Combination, picked_variant, results_path

    variant = picked_variant(model)  # the results the report's table shows

    def load(peft: bool) -> dict:
        data = read_output_json(results_path(model, Combination(peft=peft, sae=True), variant=variant))
        return data["results"] if "results" in data else data

    base, lora = load(False), load(True)
    rows = []
    for task in sorted(set(base) & set(lora)):
        b, lo = task_metrics(base[task]), task_metrics(lora[task])
        metric = next((m for m in b if m in lo), None)
        if metric is None:
            continue
        errs = [e for e in (b[metric][1], lo[metric][1]) if e is not None]
        rows.append((task, b[metric][0], lo[metric][0], max(errs) if errs else None))
    if not rows:
        raise LookupError("benchmark results with the SAE")
    return benchmarks_claim(rows)


def _interp(model: str) -> Claim:
    from lorasae.core.atomic import read_output_json
    from lorasae.interp.run import find_records

    records = find_records(model)
    if not records:
        raise LookupError("interpretability records")
    record = read_output_json(records[-1])
    summary = record["token_loss"]["summary"]
    return interp_claim(record["l2"]["lora_minus_base"]["mean"], record["cosine"]["lora_minus_base"]["mean"][-1],
                        summary["fraction_improved"], summary["mean_diff"])  # fmt: skip


def _dark_matter(model: str) -> Claim:
    from lorasae.core import paths
    from lorasae.core.atomic import read_output_json
    from lorasae.core.result_choice import find_result

    path = find_result(paths.dark_matter_dir(model), "results", f"Dark Matter results of {model}")
    if path is None:
        raise LookupError("Dark Matter results")
    summary = read_output_json(path)
    rows = [r for name in ("width_sweep", "k_sweep") for r in summary.get(name) or []]
    if not rows:
        raise LookupError("Dark Matter sweeps")
    return dark_matter_claim([r["vector_r2"] for r in rows], [r["norm_r2"] for r in rows],
                             [r["nonlinear_fvu"] for r in rows])  # fmt: skip


READERS: list[Callable[[str], Claim]] = [
    _gap, _multi, _speedup, _saebench, _steering, _benchmarks, _interp, _dark_matter
]  # fmt: skip


def claims(model: str) -> list[Claim]:
    """Every claim whose outputs exist (a missing or unreadable one is left out, as its table is)."""
    out = []
    for read in READERS:
        try:
            out.append(read(model))
        except (OSError, LookupError, KeyError, ValueError, TypeError, IndexError):
            continue
    return out
