"""Keep README's demo results current: the demo rewrites the block between two markers with its final
table, its e2e speed-up and its wall time, and copies the timing figure next to the docs."""

from __future__ import annotations

import shutil
from pathlib import Path

from lorasae.atomic import atomic_write_text

BEGIN = "<!-- demo-results:begin (written by `make demo`; edits here are overwritten) -->"
END = "<!-- demo-results:end -->"
FIGURE = Path("docs") / "demo_timing.png"


def results_block(table: str, speedup: str | None, minutes: float, machine: str, figure: str | None) -> str:
    lines = [
        BEGIN,
        f"`make demo` from scratch (world build included): {minutes:.1f} min on {machine}.",
        "",
        table.strip(),
        "",
    ]
    if speedup:
        lines += [
            "e2e speed-up (time for the e2e SAE to reach a spliced CE ÷ time for a TopK checkpoint + LoRA "
            "to reach it; SPEC §3.3):",
            "",
            speedup.strip(),
            "",
        ]
    if figure:
        lines += [f"![Spliced CE vs training time on the built-in model]({figure})", ""]
    lines.append(END)
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """`text` with the marked block replaced by `block`; ValueError when the markers are missing."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no demo block ({BEGIN!r} … {END!r})")
    return text[:start] + block + text[end + len(END) :]


def update_readme(
    root: Path, model: str, minutes: float, machine: str, timing_png: Path | None
) -> Path | None:
    """Rewrite README.md's demo block under `root` (and `docs/demo_timing.png`); None when the README has
    no such block (a copied-out package, an edited README)."""
    from lorasae.report import results_table, speedup_table

    readme = root / "README.md"
    if not readme.is_file() or BEGIN not in (text := readme.read_text(encoding="utf-8")):
        return None
    figure = None
    if timing_png is not None and timing_png.is_file():
        target = root / FIGURE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(timing_png, target)
        figure = FIGURE.as_posix()
    try:
        speedup = speedup_table(model, fmt="github")
    except FileNotFoundError:
        speedup = None
    block = results_block(results_table(model, fmt="github"), speedup, minutes, machine, figure)
    atomic_write_text(readme, replace_block(text, block))
    return readme
