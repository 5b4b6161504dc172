"""The demo's results page: written under plots/demo/ (git-ignored), so a clone stays clean after `make
demo`; README's snapshot changes only through the maintainer's `--update_readme`."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

from lorasae.core.results_columns import RESULTS_COLUMNS
from lorasae.demo.main import DemoConfig
from lorasae.demo.readme import (
    BEGIN,
    END,
    TOLERANCE,
    replace_block,
    results_block,
    update_readme,
    write_results_page,
)
from lorasae.demo.sections import Section
from lorasae.demo.stages import cpu_name

REPO = Path(__file__).resolve().parents[1]
OLD_BEGIN = "<!-- demo-results:begin (written by `make demo`; edits here are overwritten) -->"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def _fake_results(root: Path) -> None:
    """One LoRA run in data/results.csv and two figures under plots/ (what the demo leaves)."""
    path = root / "data" / "results.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULTS_COLUMNS)
        writer.writeheader()
        writer.writerow(
            {c: "" for c in RESULTS_COLUMNS}
            | dict(model="tiny", sae_tag="expansion_8_L0_4", sae_layers="1", lora_layers="0-3", rank=16)
            | dict(num_examples=160, L_base=1.5, L_SAE=2.0, L_LoRA=1.8, ce_gap=0.5, ce_improvement=0.2)
            | dict(frac_gap_closed=0.4, gap_flag="")
        )
    (root / "plots").mkdir(exist_ok=True)
    for name in ("tiny_scaling.png", "tiny_timing.png"):
        (root / "plots" / name).write_bytes(b"\x89PNG fake " + name.encode())


@pytest.fixture
def clone(out_root: Path) -> Path:
    """A committed repository with the project's .gitignore, a README with the demo block and a figure
    snapshot in docs/demo/; the output root is this repository."""
    shutil.copyfile(REPO / ".gitignore", out_root / ".gitignore")
    for folder in ("plots", "data"):
        (out_root / folder).mkdir()
        (out_root / folder / "README.md").write_text(f"{folder}\n")
    (out_root / "README.md").write_text(f"# x\n\nbefore\n\n{OLD_BEGIN}\nold results\n{END}\n\nafter\n")
    (out_root / "docs" / "demo").mkdir(parents=True)
    (out_root / "docs" / "demo" / "tiny_timing.png").write_bytes(b"old snapshot")
    _git(out_root, "init", "-q")
    _git(out_root, "add", "-A")
    _git(out_root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone")
    _fake_results(out_root)
    return out_root


def test_results_page_writes_nothing_under_tracked_paths(clone: Path):
    page = write_results_page(clone, "tiny", 11.2, "Some CPU (2 cores, x86_64)", {})
    assert _git(clone, "status", "--porcelain") == ""  # the clone stays clean
    assert page == clone / "plots" / "demo" / "RESULTS.md"
    text = page.read_text()
    assert "11.2 min on Some CPU (2 cores, x86_64)" in text and TOLERANCE in text
    assert "| expansion_8_L0_4" in text and "40.0" in text  # the LoRA runs table
    assert "- **Gap closed** (does not show): 40 % of the CE gap closed over 1 run" in text
    # figures beside the page, linked relative to it
    assert "![LoRA runs (every run of the demo)](tiny_scaling.png)" in text
    assert (clone / "plots" / "demo" / "tiny_scaling.png").read_bytes() == b"\x89PNG fake tiny_scaling.png"
    assert not (clone / "plots" / "demo" / "tiny_timing.png").exists()  # its section (no curves) is left out
    assert "old results" in (clone / "README.md").read_text()


def test_update_readme_rewrites_only_the_snapshot(clone: Path):
    assert update_readme(clone, "tiny", 11.2, "Some CPU", {}) == clone / "README.md"
    changed = sorted(line[3:] for line in _git(clone, "status", "--porcelain").splitlines())
    assert changed == ["README.md", "docs/demo/tiny_scaling.png"]
    readme = (clone / "README.md").read_text()
    assert readme.startswith("# x\n\nbefore\n\n" + BEGIN) and readme.endswith(f"{END}\n\nafter\n")
    assert "old results" not in readme and "](docs/demo/tiny_scaling.png)" in readme


def test_the_readme_snapshot_is_a_maintainer_flag_off_by_default():
    assert DemoConfig().update_readme is False


def test_replace_block_keeps_the_rest_and_is_idempotent():
    text = f"# x\n\n{OLD_BEGIN}\nold\n{END}\ntail\n"
    block = results_block(7.25, "cpu", [Section("LoRA runs", "claim", "| a |\n|---|\n| 1 |")], {})
    once = replace_block(text, block)
    assert once == f"# x\n\n{BEGIN}\n{block}{END}\ntail\n" and replace_block(once, block) == once
    with pytest.raises(ValueError, match="no demo block"):
        replace_block("# no markers\n", block)


def test_cpu_name_is_the_model_name_of_proc_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo here")
    names = [
        line.split(":", 1)[1].strip()
        for line in cpuinfo.read_text().splitlines()
        if line.startswith("model name")
    ]
    if not names:
        pytest.skip("/proc/cpuinfo names no model here")
    assert cpu_name() == names[0]
