"""Shared plumbing of the figure functions: headless figures, atomic PNG+PDF saving, rank colours.

Figures are built with `matplotlib.figure.Figure` directly (never pyplot), so they render without a
display and without touching the global backend: the same code runs in a headless test, a script on a
GPU box, or a notebook kernel (which shows the saved PNGs). `save_figure` writes `<stem>.png` and
`<stem>.pdf` through a temporary file and a rename, so an interrupted run never leaves half a figure.

A figure's bytes are a function of its content only (no creation date in the PDF), and a file is written
only when its bytes differ from the file there: redrawing a figure from the same inputs touches nothing.
With `inputs`, each figure gets a run record (`<figure>.run.json`, `lorasae.core.records`) naming the files
it was drawn from and their digests, written with the figure (kept while the figure and those digests are
unchanged; an input that changed without changing the figure still gets its new digest recorded).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lorasae.core.atomic import atomic_save_file
from lorasae.core.fingerprint import file_digest
from lorasae.core.records import read_record, write_record
from lorasae.results import resolve_root

PNG_DPI = 150
FIGURE_RECORD_KIND = "figure"
# metadata that would make the bytes differ between two saves of the same figure (matplotlib's defaults
# stamp the PDF with the time it was written)
STABLE_METADATA = {"pdf": {"CreationDate": None}}


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (6.0, 4.0), **kw):
    """A constrained-layout Figure not registered with pyplot, and its axes (as `Figure.subplots`)."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kw)


def plots_dir(root: str | Path | None, out_dir: str | Path | None) -> Path:
    """`out_dir` if given, else `<root>/plots`."""
    return Path(out_dir) if out_dir is not None else resolve_root(root) / "plots"


def figure_bytes(fig: Figure, fmt: str, dpi: int = PNG_DPI) -> bytes:
    """The figure rendered as `fmt` (png or pdf): the same content gives the same bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata=STABLE_METADATA.get(fmt))
    return buffer.getvalue()


def write_if_changed(path: str | Path, data: bytes) -> bool:
    """Write `data` to `path` atomically unless the file there holds exactly these bytes (then nothing is
    touched); True when written."""
    path = Path(path)
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_save_file(path, lambda tmp: tmp.write_bytes(data))
    return True


def save_figure(
    fig: Figure, out_dir: str | Path, stem: str, inputs: Iterable[str | Path] = (), dpi: int = PNG_DPI
) -> list[Path]:
    """Write `<out_dir>/<stem>.png` and `.pdf` atomically, each only when its bytes changed; return both
    paths. With `inputs` (the files the figure was drawn from), each figure written, lacking a record, or
    whose record names other inputs or digests, gets a run record naming them and their digests."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    sources = figure_inputs(inputs)
    paths = []
    for final in figure_paths(out_dir, stem):
        changed = write_if_changed(final, figure_bytes(fig, final.suffix[1:], dpi))
        if sources and (changed or _recorded_inputs(final) != sources):
            write_record(final, FIGURE_RECORD_KIND, {"figure": final.name, "inputs": sources})
        paths.append(final)
    return paths


def _recorded_inputs(figure: Path) -> list[dict[str, str]] | None:
    """The inputs `figure`'s record names (None without a record)."""
    record = read_record(figure)
    return record.get("inputs") if record is not None else None


def figure_paths(out_dir: str | Path, stem: str) -> list[Path]:
    """The files `save_figure(fig, out_dir, stem)` writes (PNG, then PDF), known before it draws (for a
    result that lists its figures and is written before them, so their records can name it)."""
    return [Path(out_dir) / f"{stem}.{fmt}" for fmt in ("png", "pdf")]


def results_csv_input(root: str | Path | None) -> list[Path]:
    """`data/results.csv` of `root`: the input of the figures drawn from the LoRA runs' table."""
    from lorasae.core.paths import results_csv

    return [results_csv(resolve_root(root))]


def figure_inputs(inputs: Iterable[str | Path]) -> list[dict[str, str]]:
    """The files a figure was drawn from, as its record names them: path (relative to the output root when
    inside it) and content digest, in name order."""
    from lorasae.core.paths import portable

    files = sorted({Path(p) for p in inputs if Path(p).is_file()}, key=lambda p: portable(p))
    return [{"path": portable(p), "digest": file_digest(p)} for p in files]


def rank_colors(ranks: Sequence[float]) -> dict[float, tuple]:
    """One plasma colour per rank, low ranks dark (as the paper's figures)."""
    ranks = sorted(set(ranks))
    cmap = colormaps["plasma"]
    return {r: cmap(v) for r, v in zip(ranks, np.linspace(0.1, 0.8, max(len(ranks), 1)))}


def grid(ax: Axes) -> None:
    ax.grid(True, which="major", linestyle=":", linewidth=0.6, alpha=0.7)


def examples_label(n: float) -> str:
    """Training sequences for a title: 15000 → `15k`, 2500 → `2.5k`, 160 → `160`."""
    if float(n) < 1000:
        return f"{float(n):g}"
    value = float(n) / 1000
    return f"{int(value)}k" if value.is_integer() else f"{value:g}k"


def width_label(n: float) -> str:
    """Latent count as the SAE names say it: 16384 → `16k`, 131072 → `131k`, 1048576 → `1m`."""
    n = int(n)
    return f"{n // 1000**2}m" if n >= 1000**2 else f"{n // 1000}k" if n >= 1000 else str(n)


def no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")
