"""Atomic writes: every output goes to a temporary sibling first and is renamed into place, so an
interrupted run never leaves a half-written file or folder behind.

Temporaries are named `.<name>.<pid>@<host>.<random>.tmp` (`.old` for a folder being swapped out). A SIGKILL
can still leave one behind; the next write into the same folder removes those of processes that no
longer run and that predate this process (so concurrent writers, e.g. DDP ranks, keep theirs). Files
and folders get the user's umask (0644 / 0755 by default), not mkstemp's private 0600 / 0700."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lorasae.core.errors import CorruptFileError

_STARTED = time.time()  # temporaries older than this process and of a dead pid are stale
_TEMP = re.compile(r"^\..+\.(tmp|old)$")
_TEMP_PID = re.compile(r"^\..+\.(\d+)@([A-Za-z0-9-]+)\.[^.]+\.(tmp|old)$")
HOST_TAG = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_FOREIGN_AGE = 24 * 3600  # another machine's temporaries (shared filesystem): stale after a day


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _honour_umask(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create 0600/0700 entries; give them the mode a plain open/mkdir would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def honour_umask_tree(folder: str | Path) -> None:
    """Give `folder` and everything in it the modes a plain open/mkdir would (libraries such as
    safetensors write private 0600 files; executable bits are kept, masked by the umask)."""
    mask = _umask()
    folder = Path(folder)
    for entry in [folder, *folder.rglob("*")]:
        if entry.is_symlink():
            continue
        if entry.is_dir():
            os.chmod(entry, 0o777 & ~mask)
        else:
            os.chmod(entry, (0o666 | (entry.stat().st_mode & 0o111)) & ~mask)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def is_stale_temp(entry: Path) -> bool:
    """A temporary of a killed write: our naming, its pid gone (on this host; another host's after a day),
    and older than this process."""
    if not _TEMP.match(entry.name):
        return False
    try:
        mtime = entry.lstat().st_mtime
    except OSError:
        return False
    match = _TEMP_PID.match(entry.name)
    if match and match.group(2) != HOST_TAG:  # its pid means nothing here
        return mtime < time.time() - _FOREIGN_AGE
    if match and _pid_alive(int(match.group(1))):
        return False
    return mtime < _STARTED


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the stale temporaries (files and folders) directly inside `folder`; returns them."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if is_stale_temp(entry):
            _restore_swapped_out(entry, Path(folder))
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _restore_swapped_out(entry: Path, folder: Path) -> None:
    """A stale `.old` folder of `atomic_dir` holds the output it swapped out; when the run was killed
    before the new one was renamed into place, that output is missing: put it back instead of deleting it."""
    if not (entry.name.endswith(".old") and entry.is_dir() and not entry.is_symlink()):
        return
    for kept in entry.iterdir():
        if not (folder / kept.name).exists():
            os.replace(kept, folder / kept.name)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}@{HOST_TAG}."


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save_file(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call `writer(tmp_path)` and rename the result onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        _honour_umask(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_save_file(path, write)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


# ---- reading back: every error names the file and says what to do with that kind of file ----------------
OUTPUT_HINT = "regenerate it: rerun {rerun}"
"""What to do with a damaged output this project wrote (results, curves, records, cfg.json, weights)."""


def decode_text(path: str | Path, data: bytes, fix: str) -> str:
    """`data` (the bytes of `path`) as UTF-8, or a `CorruptFileError` naming the file, the byte offset and
    `fix` (what to do with that kind of file)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorruptFileError(
            f"{path} is not UTF-8 text (byte offset {err.start}: {err.reason}); {fix}."
        ) from err


RERUN_DEFAULT = "the step that writes it (with --overwrite)"


def read_output_json(path: str | Path, rerun: str = RERUN_DEFAULT, missing_ok: bool = False) -> Any:
    """A JSON file this project wrote (a curve, a record, a result): missing → `FileNotFoundError` (None
    with `missing_ok`), corrupt → `CorruptFileError` naming it and saying to regenerate it by `rerun`."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return None
        raise FileNotFoundError(
            f"{path} does not exist" + ("." if rerun == RERUN_DEFAULT else f"; {rerun} writes it.")
        )
    fix = OUTPUT_HINT.format(rerun=rerun)
    text = decode_text(path, path.read_bytes(), fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptFileError(
            f"{path} is corrupt or truncated (not valid JSON: {err.msg} at line {err.lineno} column "
            f"{err.colno}); {fix}."
        ) from err


def _fix_by_hand(line: int, column: int) -> str:
    return f"fix it by hand at line {line}, column {column}"


def read_config_json(path: str | Path) -> Any:
    """A hand-written JSON file (a config): errors name the file and the line and column to fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. Check the path.")
    text = decode_text(path, path.read_bytes(), "fix it by hand (save it as UTF-8)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptFileError(
            f"{path}: not valid JSON at line {err.lineno}, column {err.colno} ({err.msg}); "
            f"{_fix_by_hand(err.lineno, err.colno)}."
        ) from err


def read_config_file(path: str | Path) -> Any:
    """A hand-written config, JSON (`.json`) or YAML (anything else, as simple-parsing reads it)."""
    path = Path(path)
    if path.suffix == ".json":
        return read_config_json(path)
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. Check the path.")
    text = decode_text(path, path.read_bytes(), "fix it by hand (save it as UTF-8)")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        if mark is None:
            raise CorruptFileError(f"{path}: not valid YAML ({problem}); fix it by hand.") from err
        line, column = mark.line + 1, mark.column + 1
        raise CorruptFileError(
            f"{path}: not valid YAML at line {line}, column {column} ({problem}); "
            f"{_fix_by_hand(line, column)}."
        ) from err


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `path` (an existing folder is swapped out)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        honour_umask_tree(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old / path.name, path)  # the swapped-out output goes back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def append_csv_row(
    path: str | Path, row: dict[str, Any], drop: Callable[[dict[str, Any]], bool] | None = None
) -> Path:
    """Append one row (after removing the existing rows for which `drop(row)` is true); the header is
    written with the first row. The whole file is rewritten atomically, and new columns are merged into
    the header (older rows get empty cells). Concurrent writers (sweep shards, several train_lora.py runs
    sharing a root) take turns on a lock file next to it, so none reads the file while another rewrites
    it and no row is lost."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        return _append_csv_row_unlocked(path, row, drop)


RESULTS_CSV_FIX = (
    "regenerate it: rerun the train_lora.py runs it lists (or repair line {line} by hand, e.g. from the "
    "runs' records)"
)


def read_csv_rows(path: str | Path, fix: str = RESULTS_CSV_FIX) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and rows of a CSV file this project wrote (missing: `([], [])`). Bytes that are not
    UTF-8, NUL bytes, a broken quote, or a row with more cells than the header raise `CorruptFileError`
    naming the file and the line (`fix` may hold `{line}`)."""
    path = Path(path)
    if not path.is_file():
        return [], []
    text = decode_text(path, path.read_bytes(), fix.format(line="1"))
    reader = csv.DictReader(text.splitlines(keepends=True), strict=True)
    rows = []
    try:
        for row in reader:
            if None in row:  # DictReader's key for cells beyond the header
                raise csv.Error(
                    f"{len(reader.fieldnames or []) + len(row[None])} cells, header has "
                    f"{len(reader.fieldnames or [])}"
                )
            rows.append(row)
    except csv.Error as err:
        line = reader.line_num
        raise CorruptFileError(f"{path}, line {line} is damaged ({err}); {fix.format(line=line)}.") from err
    return list(reader.fieldnames or []), rows


def _append_csv_row_unlocked(
    path: Path, row: dict[str, Any], drop: Callable[[dict[str, Any]], bool] | None = None
) -> Path:
    fields, rows = read_csv_rows(path)  # a damaged table: CorruptFileError naming file and line
    rows = [r for r in rows if not (drop and drop(r))]
    fields += [key for key in row if key not in fields]
    rows.append(row)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    return atomic_save_file(path, write)
