"""The demo's results page: `make demo` writes `plots/demo/RESULTS.md` and its figures beside it (plots/ is
git-ignored, so a clone stays clean): the wall time and the machine, the tolerance across machines, what it
showed against the paper (`lorasae.demo_claims`), and per section the paper's claim, the table and the
figures (`lorasae.demo_report`). README keeps a committed snapshot of a maintainer's run between two
markers, written only by `python -m lorasae.demo --update_readme` (figures copied to `docs/demo/`)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from lorasae import paths
from lorasae.atomic import atomic_write_text

BEGIN = "<!-- demo-results:begin (written by `python -m lorasae.demo --update_readme`; edits here are overwritten) -->"
END = "<!-- demo-results:end -->"
BEGIN_PREFIX = "<!-- demo-results:begin"
PAGE_DIR = Path("plots") / "demo"
PAGE_NAME = "RESULTS.md"
SNAPSHOT_FIGURES = Path("docs") / "demo"

TOLERANCE = (
    "Tolerance across machines: rerun on one machine, every number is bit-identical. Another thread count "
    "or another aten kernel set (AVX-512, AVX2, generic) moved the main SAE + LoRA numbers by at most 1e-6 "
    "nats and % gap closed by under 0.001 points (`bench/reproducibility.py`, BENCHMARKS.md). Across CPU "
    "vendors MKL takes another BLAS code path, which cannot be emulated on one machine: the CEs were seen to "
    "differ in the 3rd–4th decimal between an Intel and an AMD CPU. Read the CEs as ± 0.001 nats and "
    "% gap closed as ± 1 point on another machine; the evaluations downstream (SAE-Bench, steering, "
    "benchmarks, Dark Matter) also move within their own sampling error."
)

# section title → the figures (names under plots/, plot_all keys ending in ':', or a figure of the Dark
# Matter results the report shows, `dark_matter:<file name>`) it shows
SECTION_FIGURES: dict[str, tuple[str, ...]] = {
    "LoRA runs (every run of the demo)": ("tiny_scaling.png", "tiny_single_layer_lora.png"),
    "e2e speed-up": ("tiny_timing.png",),
    "Several SAEs at once": ("tiny_multi_sae.png",),
    "SAE-Bench: base vs LoRA-merged model": ("saebench_tiny.png",),
    "Steering (LoRA − base Δ with 90 % intervals)": ("steering:",),
    "Interpretability analysis (activations after the SAE, per-token loss)": (
        "tiny_interp_layers.png",
        "tiny_interp_token_loss.png",
    ),
    "Dark Matter of SAEs": ("dark_matter:decomposition.png", "dark_matter:base_vs_lora.png"),
}


def results_block(
    minutes: float,
    machine: str,
    sections: Sequence,
    figures: Mapping[str, Sequence[str]],
    claims: Sequence = (),
    rules: str = "",
) -> str:
    """The results: the wall time and machine, the tolerance, the claims (bullets, then their `rules`),
    then per section its title, the paper's claim, the table and its figures (`figures[title]`: paths
    relative to the file the block goes in)."""
    lines = [
        f"`make demo` from scratch (world build included): {minutes:.1f} min on {machine}.",
        "",
        TOLERANCE,
        "",
    ]
    if claims:
        lines += ["What it showed, against the paper:", "", *(c.bullet() for c in claims), ""]
        if rules:
            lines += [rules, ""]
    for section in sections:
        lines += [f"#### {section.title}", "", f"*Paper:* {section.claim}", "", section.table.strip(), ""]
        for figure in figures.get(section.title, ()):
            lines += [f"![{section.title}]({figure})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def replace_block(text: str, block: str) -> str:
    """`text` with the marked block (any begin marker of this kind) replaced by `block` between the
    current markers; ValueError when the markers are missing."""
    start, end = text.find(BEGIN_PREFIX), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no demo block ({BEGIN!r} … {END!r})")
    return text[:start] + f"{BEGIN}\n{block}{END}" + text[end + len(END) :]


def _section_files(root: Path, plotted: Mapping[str, Sequence[Path]]) -> dict[str, list[Path]]:
    """Per section title, the figures the demo drew (those that exist)."""
    plots = root / "plots"
    out: dict[str, list[Path]] = {}
    for title, names in SECTION_FIGURES.items():
        for name in names:
            if name == "steering:":  # the result the report shows (`pick_steering_result`)
                files = [Path(f) for f in plotted.get(f"steering:{_steering_label(root)}", [])]
            elif name.endswith(":"):  # every figure plot_all drew under keys with this prefix
                files = [Path(f) for key, fs in plotted.items() if key.startswith(name) for f in fs]
            elif name.startswith("dark_matter:"):
                files = [f for f in _dark_matter_figures(root) if f.name == name.removeprefix("dark_matter:")]
            else:
                files = [plots / name]
            out.setdefault(title, []).extend(f for f in files if f.suffix == ".png" and f.is_file())
    return out


def _steering_label(root: Path) -> str | None:
    from lorasae.results import pick_steering_result, steering_label

    path = pick_steering_result(None, root)
    return steering_label(path) if path is not None else None


def _dark_matter_figures(root: Path, model: str = "tiny") -> list[Path]:
    """The figures the Dark Matter results the report shows (`eval_identity.find_result`) name."""
    from lorasae.atomic import read_output_json
    from lorasae.eval_identity import find_result

    path = find_result(paths.dark_matter_dir(model, root), "results", f"Dark Matter results of {model}")
    summary = read_output_json(path, "eval/dark_matter/run.py", True) if path is not None else None
    return [paths.from_portable(f) for f in (summary or {}).get("figures", [])]


def _copy(files: Mapping[str, Sequence[Path]], folder: Path) -> dict[str, list[Path]]:
    """Copy each figure into `folder`; the copies, per section."""
    out: dict[str, list[Path]] = {}
    for title, sources in files.items():
        folder.mkdir(parents=True, exist_ok=True)
        for source in sources:
            target = folder / source.name
            if source.resolve() != target.resolve():
                shutil.copyfile(source, target)
            out.setdefault(title, []).append(target)
    return out


def _block(root: Path, model: str, minutes: float, machine: str, plotted: Mapping[str, Sequence[Path]],
           folder: Path, relative_to: Path) -> str:  # fmt: skip
    """The results block; the figures of the sections shown are copied into `folder` and linked relative
    to `relative_to` (the folder of the file the block goes in)."""
    from lorasae.demo_claims import RULES, claims
    from lorasae.demo_report import sections

    shown = sections(model, fmt="github")
    titles = {s.title for s in shown}
    files = {t: fs for t, fs in _section_files(root, plotted).items() if t in titles and fs}
    figures = _copy(files, folder)
    rel = {t: [f.relative_to(relative_to).as_posix() for f in fs] for t, fs in figures.items()}
    return results_block(minutes, machine, shown, rel, claims(model), RULES)


def write_results_page(
    root: Path, model: str, minutes: float, machine: str, plotted: Mapping[str, Sequence[Path]]
) -> Path:
    """Write `<root>/plots/demo/RESULTS.md` and copy the section figures beside it; return the page. Writes
    nothing else (plots/ is git-ignored)."""
    folder = root / PAGE_DIR
    page = folder / PAGE_NAME
    body = _block(root, model, minutes, machine, plotted, folder, folder)
    atomic_write_text(page, f"# `make demo` results ({model})\n\n{body}")
    write_page_record(page, root, model)
    return page


def page_inputs(root: Path, model: str) -> list[Path]:
    """The result files the page's sections read (each found by the readers' one rule), those that exist."""
    from lorasae.benchmarks.layout import ALL_FOUR, picked_variant, results_path
    from lorasae.eval_identity import find_result
    from lorasae.interp.run import find_records
    from lorasae.results import pick_steering_result
    from lorasae.saebench.comparison import result_folders

    found: list[Path | None] = [paths.results_csv(root)]
    for folder in result_folders(model, paths.eval_dir("SAE-Bench", root) / "results").values():
        found += sorted(p for p in folder.glob("*.json") if not p.name.endswith(".run.json"))
    found.append(pick_steering_result(model, root))
    variant = picked_variant(model, root)
    found += [results_path(model, c, root, variant) for c in ALL_FOUR]
    found += find_records(model, root)[-1:]
    found.append(
        find_result(paths.dark_matter_dir(model, root), "results", f"Dark Matter results of {model}")
    )
    return [p for p in dict.fromkeys(found) if p is not None and p.is_file()]


def write_page_record(page: Path, root: Path, model: str) -> Path:
    """The page's run record: the model and, per result file it read, its run record's identity digest
    (the file's own digest for one without a record); parents: those records."""
    from lorasae.fingerprint import file_digest
    from lorasae.records import read_record, write_record

    inputs, parents = {}, []
    for path in page_inputs(root, model):
        record = read_record(path)
        inputs[paths.portable(path)] = record.identity_digest if record is not None else file_digest(path)
        if record is not None:
            parents.append(record.path)
    return write_record(page, "demo_results_page", {"model": model, "inputs": inputs}, parents)


def update_readme(
    root: Path, model: str, minutes: float, machine: str, plotted: Mapping[str, Sequence[Path]]
) -> Path | None:
    """The maintainer's snapshot: README.md's demo block under `root` rewritten with this run's results and
    its figures copied to `docs/demo/`; None when the README has no such block."""
    readme = root / "README.md"
    if not readme.is_file() or BEGIN_PREFIX not in (text := readme.read_text(encoding="utf-8")):
        return None
    block = _block(root, model, minutes, machine, plotted, root / SNAPSHOT_FIGURES, root)
    atomic_write_text(readme, replace_block(text, block))
    return readme
