"""Issue 25 item 2: the dictionaries figure is named as the comparison table it draws. The table is one per
settings (`data/dictionaries/<model>/comparison[__<variant>].json`) but the figure was one per model
(`plots/<model>_dictionaries`), so a comparison with other settings redrew another's figure. Now the
figure carries the table's variant (none for the default settings' `comparison.json`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from conftest import make_char_tokenizer, make_tiny_model

from lorasae.core.records import read_record
from lorasae.dictcompare.config import DictionariesConfig
from lorasae.dictcompare.figure import plot_comparison
from lorasae.dictcompare.table import LoraNumbers, Row, write_comparison


def _row(architecture: str, lora: float) -> Row:
    return Row(
        architecture, 4.0, 0.2, 0.5, 0.1, LoraNumbers(1.5, 2.0, lora, 0.3), LoraNumbers(1.5, 1.9, 1.7, 0.25)
    )


def _state(files: list[Path]) -> dict[Path, tuple[bytes, int]]:
    return {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}


def test_two_comparison_settings_draw_two_figures_named_as_their_tables(
    tmp_path: Path, out_root: Path
) -> None:
    folder = tmp_path / "tiny"
    make_tiny_model("llama", n_layers=2).save_pretrained(folder)
    make_char_tokenizer().save_pretrained(folder)
    default = DictionariesConfig(model=str(folder))
    other = dataclasses.replace(default, kl_tokens_pct=25.0)
    first = write_comparison(other, [_row("topk", 1.8), _row("jumprelu", 1.6)], 1.0)
    assert first.name == "comparison__kl_tokens_pct-25.0.json"
    # only the other settings' table: the figure drawn without naming a table is that one's, by its name
    theirs = plot_comparison(None, "tiny")
    assert [f.name for f in theirs] == [f"tiny_dictionaries__kl_tokens_pct-25.0.{e}" for e in ("png", "pdf")]
    plain = write_comparison(default, [_row("topk", 1.7)], 1.0)
    assert plain.name == "comparison.json"
    before = _state(theirs)
    mine = plot_comparison(None, "tiny", comparison=plain)
    assert [f.name for f in mine] == ["tiny_dictionaries.png", "tiny_dictionaries.pdf"]
    assert _state(theirs) == before  # the other settings' figure was not redrawn
    assert mine[0].read_bytes() != theirs[0].read_bytes()
    assert [i["path"] for i in read_record(mine[0]).get("inputs")] == [
        "data/dictionaries/tiny/comparison.json"
    ]
    # without naming a table: `load_comparison`'s choice, the default settings' table, under the plain name
    assert plot_comparison(None, "tiny") == mine
    assert plot_comparison(None, "tiny", comparison=first) == theirs and _state(theirs) == before
