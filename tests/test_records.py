"""Run records (lorasae.core.records): written beside an output, read back, identity compared by digest."""

from __future__ import annotations

import json

import pytest

from lorasae.core.errors import CorruptFileError
from lorasae.core.records import (
    digest,
    ensure_record,
    model_weights_digest,
    read_record,
    record_path,
    same_run,
    write_record,
)


def test_record_of_a_folder_lives_inside_it_even_when_its_name_has_a_dot(tmp_path):
    folder = tmp_path / "model.layers.1"
    assert record_path(folder) == folder / "run.json"  # not yet created: no known file ending
    folder.mkdir()
    assert record_path(folder) == folder / "run.json"


def test_record_of_a_file_lives_beside_it(tmp_path):
    out = tmp_path / "peft_0-3_rank_16_CE_increase_0.16k.json"
    out.write_text("{}")
    assert record_path(out) == tmp_path / "peft_0-3_rank_16_CE_increase_0.16k.json.run.json"


def test_written_record_reads_back_with_the_digest_of_its_identity(tmp_path):
    out = tmp_path / "a.json"
    out.write_text("{}")
    identity = {"model": "tiny", "rank": 16, "layers": [0, 1, 2, 3]}
    write_record(out, "lora", identity, parents=["saved_saes/tiny/normal/x"])
    record = read_record(out)
    assert record.kind == "lora" and record.identity == identity
    assert record.identity_digest == digest(identity)
    assert record.parents == ["saved_saes/tiny/normal/x"] and not record.inferred
    assert same_run(out, dict(identity)) and not same_run(out, identity | {"rank": 4})


def test_damaged_record_names_its_file(tmp_path):
    out = tmp_path / "a.json"
    out.write_text("{}")
    record_path(out).write_text("{not json")
    with pytest.raises(CorruptFileError, match="a.json.run.json"):
        read_record(out)
    record_path(out).write_text(json.dumps({"kind": "lora"}))
    with pytest.raises(CorruptFileError, match="lacks 'identity'"):
        read_record(out)


def test_legacy_output_gets_an_inferred_record_once(tmp_path):
    folder = tmp_path / "model.layers.1"
    folder.mkdir()
    first = ensure_record(folder, "sae", {"model": "tiny", "k": 4})
    assert first.inferred and (folder / "run.json").is_file()
    again = ensure_record(folder, "sae", {"model": "other"})  # the record, not a new guess, wins
    assert again.identity == {"model": "tiny", "k": 4}


def test_model_digest_follows_the_weight_bytes(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    (tmp_path / "config.json").write_text("{}")
    before = model_weights_digest(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert model_weights_digest(tmp_path) != before
    assert model_weights_digest("google/gemma-2-2b") is None


def test_inferred_record_is_written_only_when_the_guarded_command_succeeds(tmp_path):
    from lorasae.core.errors import main_guard
    from lorasae.core.records import defer_inferred_record

    folder = tmp_path / "rank_16"
    folder.mkdir()

    @main_guard
    def failing(argv):
        defer_inferred_record(folder, "adapter", {"rank": 16})
        raise ValueError("the eval failed")

    @main_guard
    def finishing(argv):
        first = defer_inferred_record(folder, "adapter", {"rank": 16})
        assert defer_inferred_record(folder, "adapter", {"rank": 4}) == first  # one record per process

    assert failing([]) == 1 and read_record(folder) is None
    assert finishing([]) == 0
    record = read_record(folder)
    assert record.inferred and record.identity == {"rank": 16}
