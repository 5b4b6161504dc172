"""The built-in model's folder also holds the user's adapters and runs (`saved_models/tiny/<sae tag>/...`):
a missing or partial model is rebuilt beside it and only the model's own files are swapped in (issue 25,
item 3); nothing else under `saved_models/tiny/` is deleted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lorasae.core.errors import RunInterrupted
from lorasae.world import tiny_model as tiny_mod
from lorasae.world.tiny_model import TinyWorldConfig, ensure_tiny_model

MICRO = dataclasses.replace(TinyWorldConfig.for_tests(), n_docs=200, train_tokens=2_000)


def _user_outputs(tiny: Path) -> dict[Path, bytes]:
    """A fake adapter (and a run's result) the user made under the built-in model's folder."""
    adapter = tiny / "expansion_8_L0_4" / "peft_0-3" / "rank_64"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"user adapter weights")
    (adapter / "adapter_config.json").write_text('{"r": 64}')
    (tiny / "notes.txt").write_text("mine")
    return {p: p.read_bytes() for p in tiny.rglob("*") if p.is_file()}


def test_missing_weights_rebuild_keeps_the_adapters_under_the_model_folder(tmp_path: Path, capsys) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    kept = _user_outputs(tiny)
    (tiny / "config.json").write_text("{}")  # a partial model: config without weights
    assert ensure_tiny_model(tmp_path, MICRO, progress=False) == tiny
    for path, data in kept.items():
        assert path.read_bytes() == data, f"{path} was lost or changed by the rebuild"
    assert (tiny / "model.safetensors").is_file() and (tiny / "world.json").is_file()
    assert '"vocab_size"' in (tiny / "config.json").read_text()  # the stale config was replaced
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "rebuilding" in line]
    assert len(lines) == 1 and str(tiny) in lines[0] and "kept" in lines[0]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tiny.tmp-")] == []


def test_a_fresh_build_says_so_and_creates_the_folder(tmp_path: Path, capsys) -> None:
    tiny = ensure_tiny_model(tmp_path, MICRO, progress=False)
    assert (tiny / "model.safetensors").is_file()
    assert "building the built-in model" in capsys.readouterr().out


def test_interrupted_rebuild_keeps_everything_and_says_so_truthfully(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "tokenizer.json").write_text("old partial tokenizer")
    kept = _user_outputs(tiny) | {tiny / "tokenizer.json": b"old partial tokenizer"}
    real_save = tiny_mod._save_world

    def save_then_interrupt(folder: Path, *args: object) -> None:
        real_save(folder, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny_mod, "_save_world", save_then_interrupt)
    with pytest.raises(RunInterrupted) as caught:
        ensure_tiny_model(tmp_path, MICRO, progress=False)
    message = str(caught.value)
    assert "nothing more was written" not in message
    assert str(tiny) in message and "unchanged" in message and "rebuil" in message
    for path, data in kept.items():
        assert path.read_bytes() == data
    assert not (tiny / "model.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tiny.tmp-")] == []


def test_build_tiny_model_never_deletes_a_partial_target(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    kept = _user_outputs(tiny)
    tiny_mod.build_tiny_model(tiny, MICRO, progress=False)
    for path, data in kept.items():
        assert path.read_bytes() == data
    assert (tiny / "model.safetensors").is_file()
