"""The built-in model's second size (`tiny-s`, issue 30): built by the same builder from its own config,
on the same corpus and tokenizer as `tiny`, with a run record; the registry resolves its key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lorasae.core.records import read_record
from lorasae.world.sizes import BUILTIN_SIZES, is_builtin_size, size_config
from lorasae.world.tiny_model import WORLD_RECORD_KIND, TinyWorldConfig, ensure_tiny_model

MICRO = dataclasses.replace(TinyWorldConfig.for_tests(), n_docs=200, train_tokens=2_000)


def test_tiny_s_is_tiny_at_half_width_on_half_the_tokens_at_twice_the_rate_with_everything_else_the_same() -> (
    None
):
    tiny, small = size_config("tiny"), size_config("tiny-s")
    assert tiny == TinyWorldConfig()
    assert (small.d_model, small.d_ff) == (tiny.d_model // 2, tiny.d_ff // 2)
    assert small.d_model // small.n_heads == tiny.d_model // tiny.n_heads  # same head width
    assert (small.train_tokens, small.lr) == (tiny.train_tokens // 2, tiny.lr * 2)
    same = ("seed", "n_docs", "vocab_size", "n_layers", "ctx_len", "batch_size", "warmup_steps")
    assert all(getattr(small, f) == getattr(tiny, f) for f in same)
    test_small = size_config("tiny-s", TinyWorldConfig.for_tests())
    assert test_small.d_model == TinyWorldConfig.for_tests().d_model // 2


def test_unknown_size_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="tiny-s"):
        size_config("tiny-xl")
    assert is_builtin_size("tiny-s") and is_builtin_size("tiny") and not is_builtin_size("gemma")


def test_second_size_builds_beside_tiny_on_the_same_tokenizer_with_a_run_record(tmp_path: Path) -> None:
    tiny = ensure_tiny_model(tmp_path, MICRO, progress=False)
    small = ensure_tiny_model(tmp_path, size_config("tiny-s", MICRO), progress=False, size="tiny-s")
    assert small == tmp_path / "tiny-s" and tiny == tmp_path / "tiny"
    config = json.loads((small / "config.json").read_text())
    assert config["hidden_size"] == MICRO.d_model // 2
    assert json.loads((tiny / "config.json").read_text())["hidden_size"] == MICRO.d_model
    # same corpus and vocabulary size: the tokenizer trained on it is the same file
    assert (small / "tokenizer.json").read_bytes() == (tiny / "tokenizer.json").read_bytes()
    for folder, width in ((tiny, MICRO.d_model), (small, MICRO.d_model // 2)):
        record = read_record(folder)
        assert record is not None and record.kind == WORLD_RECORD_KIND
        assert record.get("config")["d_model"] == width
        world = json.loads((folder / "world.json").read_text())
        assert record.extra["n_params"] == world["n_params"]
    assert read_record(tiny).identity_digest != read_record(small).identity_digest
    assert (
        json.loads((small / "world.json").read_text())["n_params"]
        < json.loads((tiny / "world.json").read_text())["n_params"]
    )


def test_registry_resolves_every_builtin_size_to_its_folder(tmp_path: Path, monkeypatch) -> None:
    from lorasae.model import load as models

    built: list[str] = []

    def fake_ensure(root=None, config=None, progress=True, size="tiny"):
        built.append(size)
        return tmp_path / size

    monkeypatch.setattr("lorasae.world.tiny_model.ensure_tiny_model", fake_ensure)
    for size in BUILTIN_SIZES:
        assert models.MODEL_REGISTRY[size] == f"builtin:{size}"
        assert models.resolve_model_name(size) == str(tmp_path / size)
        assert models.model_key(size) == size
    assert built == list(BUILTIN_SIZES)


def test_builtin_sizes_default_to_the_builtin_corpus() -> None:
    from lorasae.model.data import default_dataset

    assert default_dataset("tiny-s") == default_dataset("tiny") == "builtin"
