"""Natural English available offline in every Python install, extracted deterministically.

Two sources, both read without importing anything beyond `pydoc_data`:
- `pydoc_data.topics.topics`: the language reference text behind `help("topic")` (~0.47 M characters);
- the docstrings of the standard library's top-level modules (module, class and function docstrings of
  every `<stdlib>/*.py`, parsed with `ast`, never imported; ~0.9 M characters).
Sources are visited in sorted order and split into paragraph-aligned chunks, so the result only depends
on the Python installation. A missing source (stripped-down Pythons) just yields fewer chunks.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path

__all__ = ["pydoc_topics", "stdlib_docstrings", "prose_chunks", "prose_fingerprint"]

_BLANK_LINES = re.compile(r"\n\s*\n")


def pydoc_topics() -> list[tuple[str, str]]:
    """`(topic, text)` pairs of `pydoc_data.topics.topics`, sorted by topic; empty if unavailable."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return []
    return [(name, topics[name]) for name in sorted(topics)]


def _docstrings(tree: ast.AST) -> list[str]:
    """Docstrings of a module and of its classes/functions, in source order (depth first)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                found.append(doc)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def stdlib_docstrings(stdlib: Path | None = None) -> list[tuple[str, str]]:
    """`(module, docstrings joined by blank lines)` for every top-level `*.py` of the stdlib, sorted."""
    folder = Path(stdlib or sysconfig.get_paths()["stdlib"])
    out: list[tuple[str, str]] = []
    for path in sorted(folder.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docs = _docstrings(tree)
        if docs:
            out.append((path.stem, "\n\n".join(docs)))
    return out


def _chunk(text: str, max_chars: int) -> list[str]:
    """Split at blank lines into chunks of at most ~max_chars (a single longer paragraph stays whole)."""
    chunks: list[str] = []
    current = ""
    for para in _BLANK_LINES.split(text.strip()):
        para = para.strip("\n")
        if not para.strip():
            continue
        if current and len(current) + len(para) + 2 > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        chunks.append(current)
    return chunks


_CACHE_FORMAT = 1


def _cache_file(max_chars: int) -> Path:
    """The prose of this Python install, cached across processes (parsing the stdlib takes seconds, and
    every command that reads the built-in corpus needs it): `$LORASAE_CACHE` or `~/.cache/lorasae`, keyed
    by the interpreter and the name, size and mtime of every source file read."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    digest = hashlib.sha256(f"{_CACHE_FORMAT} {max_chars} {sys.version} {folder}".encode())
    sources = sorted(folder.glob("*.py")) + [folder / "pydoc_data" / "topics.py"]
    for path in sources:
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}".encode())
    base = (
        os.environ.get("LORASAE_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lorasae"
    )
    return Path(base) / f"prose-{digest.hexdigest()[:16]}.json"


def _read_cache(path: Path) -> tuple[tuple[str, str], ...] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return tuple((str(source), str(text)) for source, text in data)
    except (OSError, ValueError, TypeError):
        return None  # absent or damaged: recompute (and rewrite)


def _write_cache(path: Path, chunks: tuple[tuple[str, str], ...]) -> None:
    from lorasae.core.atomic import atomic_write_text

    try:
        atomic_write_text(path, json.dumps(chunks))
    except OSError:
        pass  # a read-only home: recompute next time


@lru_cache(maxsize=4)
def prose_chunks(max_chars: int = 1200) -> tuple[tuple[str, str], ...]:
    """`(source, text)` chunks of all prose, in a fixed order: pydoc topics first, then docstrings.

    `source` is `"pydoc:<topic>"` or `"docstring:<module>"`. Read from the on-disk cache when this
    install's prose was extracted before (`_cache_file`)."""
    cache = _cache_file(max_chars)
    cached = _read_cache(cache)
    if cached is not None:
        return cached
    chunks = _extract_chunks(max_chars)
    _write_cache(cache, chunks)
    return chunks


def _extract_chunks(max_chars: int) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for name, text in pydoc_topics():
        out.extend((f"pydoc:{name}", chunk) for chunk in _chunk(text, max_chars))
    for name, text in stdlib_docstrings():
        out.extend((f"docstring:{name}", chunk) for chunk in _chunk(text, max_chars))
    return tuple(out)


def prose_fingerprint(max_chars: int = 1200) -> str:
    """Short sha256 of the prose chunks: recorded with a built world (it depends on the Python install)."""
    digest = hashlib.sha256()
    for source, text in prose_chunks(max_chars):
        digest.update(source.encode())
        digest.update(text.encode())
    return digest.hexdigest()[:16]
