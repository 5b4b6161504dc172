"""plot.ipynb is committed without outputs and executes headless against synthetic output files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # works under any pytest import mode
from required_libs import require  # noqa: E402
from test_plotting import write_fake_outputs  # noqa: E402

nbformat = require("nbformat")
nbclient = require("nbclient")
require("ipykernel")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "plot.ipynb"


def test_notebook_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear the notebook's outputs"


def _execute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: Path, allow_errors: bool = False):
    """Run plot.ipynb headless against the outputs under `root`; returns the executed notebook."""
    # A kernel spec for this interpreter in a private Jupyter path: no install into the venv or $HOME.
    spec = tmp_path / "jupyter" / "kernels" / "lorasae-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "lorasae", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("LORASAE_ROOT", str(root))
    monkeypatch.setenv("LORASAE_MODEL", "tiny")
    monkeypatch.delenv("LORASAE_DEBUG", raising=False)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="lorasae-test",
        resources={"metadata": {"path": str(REPO)}},
        allow_errors=allow_errors,
    )
    client.execute()  # raises CellExecutionError on any failing cell (unless allow_errors)
    return nb


def test_notebook_on_a_corrupt_curve_shows_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = tmp_path / "root"
    root.mkdir()
    write_fake_outputs(root)
    curve = root / "data" / "TopK" / "val_loss" / "tiny" / "normal_SAE.json"
    curve.write_text(curve.read_text()[:40])  # truncated mid-list
    nb = _execute(tmp_path, monkeypatch, root, allow_errors=True)
    errors = [
        out for c in nb.cells if c.cell_type == "code" for out in c.outputs if out.output_type == "error"
    ]
    printed = "".join(out.get("text", "") for c in nb.cells if c.cell_type == "code" for out in c.outputs)
    assert errors, "the speed-up cell should stop on the damaged curve"
    for out in errors:
        assert len(out["traceback"]) == 1, out["traceback"]
        assert "normal_SAE.json" in out["traceback"][0] and "regenerate it" in out["traceback"][0]
    assert "Traceback" not in printed
    assert f"skipped plot_timing: {curve} is corrupt" in printed


def test_notebook_executes_headless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "root"
    root.mkdir()
    write_fake_outputs(root)
    nb = _execute(tmp_path, monkeypatch, root)

    text = "\n".join(
        out.get("text", "") + json.dumps(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "skipped" not in text, text
    assert "faster than the e2e SAE" in text
    assert "CE gap closed" in text  # the interpretability cell printed its tables
    images = sum(
        "image/png" in out.get("data", {}) for c in nb.cells if c.cell_type == "code" for out in c.outputs
    )
    assert images == 7
    for stem in (
        "tiny_timing",
        "tiny_scaling",
        "model_size_scaling",
        "tiny_single_layer_lora",
        "steering_latent_5",
        "tiny_interp_layers",
        "tiny_interp_token_loss",
    ):
        for ext in ("png", "pdf"):
            path = root / "plots" / f"{stem}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
