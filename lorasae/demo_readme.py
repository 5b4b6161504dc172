"""Keep README's demo results current: the demo rewrites the block between two markers with its wall time
and every result section (`lorasae.demo_report`: what the paper claims, the table, the figures), and copies
the figures to `docs/demo/` so README shows them."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from lorasae.atomic import atomic_write_text

BEGIN = "<!-- demo-results:begin (written by `make demo`; edits here are overwritten) -->"
END = "<!-- demo-results:end -->"
FIGURES = Path("docs") / "demo"

# section title → the figures (names under plots/, or plot_all keys) it shows
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
    "Dark Matter of SAEs": ("dark_matter/tiny/decomposition.png", "dark_matter/tiny/base_vs_lora.png"),
}


def results_block(
    minutes: float, machine: str, sections: Sequence, figures: Mapping[str, Sequence[str]]
) -> str:
    """The marked block: the wall time, then per section its title, the paper's claim, the table and its
    figures (`figures[title]`: paths relative to the README)."""
    lines = [BEGIN, f"`make demo` from scratch (world build included): {minutes:.1f} min on {machine}.", ""]
    for section in sections:
        lines += [f"#### {section.title}", "", f"*Paper:* {section.claim}", "", section.table.strip(), ""]
        for figure in figures.get(section.title, ()):
            lines += [f"![{section.title}]({figure})", ""]
    lines.append(END)
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """`text` with the marked block replaced by `block`; ValueError when the markers are missing."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no demo block ({BEGIN!r} … {END!r})")
    return text[:start] + block + text[end + len(END) :]


def _copy_figures(root: Path, plotted: Mapping[str, Sequence[Path]]) -> dict[str, list[str]]:
    plots = root / "plots"
    out: dict[str, list[str]] = {}
    for title, names in SECTION_FIGURES.items():
        for name in names:
            if name.endswith(":"):  # every figure plot_all drew under keys with this prefix
                files = [f for key, fs in plotted.items() if key.startswith(name) for f in fs]
            else:
                files = [plots / name]
            for file in files:
                if file.suffix != ".png" or not file.is_file():
                    continue
                target = root / FIGURES / file.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)
                out.setdefault(title, []).append(target.relative_to(root).as_posix())
    return out


def update_readme(
    root: Path, model: str, minutes: float, machine: str, plotted: Mapping[str, Sequence[Path]]
) -> Path | None:
    """Rewrite README.md's demo block under `root` (and the figures in `docs/demo/`); None when the README
    has no such block (a copied-out package, an edited README)."""
    from lorasae.demo_report import sections

    readme = root / "README.md"
    if not readme.is_file() or BEGIN not in (text := readme.read_text(encoding="utf-8")):
        return None
    block = results_block(minutes, machine, sections(model, fmt="github"), _copy_figures(root, plotted))
    atomic_write_text(readme, replace_block(text, block))
    return readme
