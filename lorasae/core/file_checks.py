"""Checks of saved files before a library loads them, so that a damaged file is reported by name with what
to do about it (transformers, peft and safetensors report a truncated file without naming it, or with a
traceback). Reading the headers only: cheap even for large weights."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from lorasae.core.atomic import decode_text
from lorasae.core.errors import CorruptFileError

_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


def check_safetensors(path: str | Path, fix: str) -> None:
    """Raise `CorruptFileError` naming `path` and `fix` unless it is a complete safetensors file: an
    8-byte header length, a JSON header, and exactly the bytes its tensors' offsets cover."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CorruptFileError(f"{path} is truncated ({size} bytes, no safetensors header); {fix}.")
        (length,) = struct.unpack("<Q", head)
        if length > min(_MAX_HEADER, size - 8):
            raise CorruptFileError(
                f"{path} is truncated or not a safetensors file (header of {length} bytes in a file of "
                f"{size}); {fix}."
            )
        raw = handle.read(length)
    try:
        header = json.loads(raw)
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise CorruptFileError(f"{path} has a corrupt safetensors header ({err}); {fix}.") from err
    if size != 8 + length + end:
        raise CorruptFileError(
            f"{path} is truncated or damaged ({size} bytes where its header describes {8 + length + end}); "
            f"{fix}."
        )


def check_json(path: str | Path, fix: str) -> None:
    """Raise `CorruptFileError` naming `path`, the line and `fix` unless it parses as JSON."""
    path = Path(path)
    text = decode_text(path, path.read_bytes(), fix)
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptFileError(
            f"{path} is corrupt or truncated (not valid JSON: {err.msg} at line {err.lineno} column "
            f"{err.colno}); {fix}."
        ) from err


def check_saved_folder(folder: str | Path, fix: str) -> None:
    """Check every `*.safetensors` and `*.json` directly in `folder` (a saved model or adapter); a file
    that is damaged raises `CorruptFileError` naming it and `fix`. Not a folder: nothing to check."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.suffix == ".safetensors" and path.is_file():
            check_safetensors(path, fix)
        elif path.suffix == ".json" and path.is_file():
            check_json(path, fix)


__all__ = ["check_json", "check_safetensors", "check_saved_folder"]
