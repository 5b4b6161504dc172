"""Which tokens Dark Matter analyses: a region of the packed token stream (`data.pack_chunks`, the stream
every script splits into validation chunks first, then training chunks) that neither the analysed SAEs nor
the adapter read, so the held-out half of the regression is held out from the SAE as well.

How far each run read is derived from its records: an SAE folder's cfg.json (`metadata.lorasae`:
`train_tokens`, `num_val_tokens`, `ctx_len`) and an adapter's run record (`run.json`:
`num_train_examples`, `batch_size`, `num_val_tokens`, `ctx_len`). Runs may pack with another context
length than the analysis, so positions are counted in document tokens (the stream without the BOS that
starts each chunk): a run that read c chunks of length T read c·(T − 1) of them. An SAE without such
records (Gemma Scope, or one saved by another tool) trained on other text and constrains nothing.

    uses = [u for u in (*map(sae_stream_use, sources), adapter_stream_use(adapter)) if u]
    region = analysis_region(uses, ctx_len=128, count=188, bos=True)
    chunks = stream_chunks("builtin", tokenizer, region, seed=42)
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lorasae.core import paths
from lorasae.core.errors import PreflightError
from lorasae.core.records import read_record
from lorasae.model.data import load_texts, pack_chunks


@dataclass(frozen=True)
class StreamUse:
    """A run read chunks [0, `chunks`) of `ctx_len` tokens of the stream (its validation, then training)."""

    what: str
    """The run (an SAE folder or an adapter folder)."""
    ctx_len: int
    chunks: int

    def document_tokens(self, bos: bool) -> int:
        """Document tokens (BOS excluded) of the stream the run read."""
        return self.chunks * (self.ctx_len - int(bos))


def _chunks(tokens: int, ctx_len: int) -> int:
    return -(-int(tokens) // int(ctx_len))


def sae_stream_use(source: str | Path) -> StreamUse | None:
    """What an SAE folder of ours read (validation chunks + the chunks of its `train_tokens`), from its
    cfg.json; None for a release/id source or a folder without those records."""
    cfg_file = Path(source) / "cfg.json"
    if not cfg_file.is_file():
        return None
    meta = (json.loads(cfg_file.read_text()).get("metadata") or {}).get("lorasae") or {}
    ctx, train, val = meta.get("ctx_len"), meta.get("train_tokens"), meta.get("num_val_tokens")
    if not ctx or train is None or val is None:
        return None
    return StreamUse(
        f"SAE {paths.portable(source)}", int(ctx), max(1, _chunks(val, ctx)) + _chunks(train, ctx)
    )


def adapter_stream_use(adapter: str | Path | None) -> StreamUse | None:
    """What the LoRA run that saved `adapter` read (validation chunks + its training sequences, whole
    batches), from the adapter's run record (`run.json`, `lorasae.store.lora_identity.run_identity`); None
    without an adapter or without a record that says so (an adapter made before run records)."""
    if adapter is None:
        return None
    record = read_record(adapter) if Path(adapter).is_dir() else None
    if record is None:
        return None
    s = dict(record.get("settings") or {})
    examples, ctx, val = record.get("num_train_examples"), s.get("ctx_len"), s.get("num_val_tokens")
    if not ctx or val is None or not examples:
        return None
    batch = s.get("batch_size") or 1
    train = _chunks(examples, batch) * batch
    return StreamUse(f"adapter {paths.portable(adapter)}", int(ctx), max(1, _chunks(val, ctx)) + train)


@dataclass(frozen=True)
class TokenRegion:
    """Chunks [`start`, `start` + `count`) of `ctx_len` tokens of the stream."""

    ctx_len: int
    start: int
    count: int
    bos: bool
    after: tuple[str, ...] = ()
    """The runs whose tokens it follows (the one that read furthest first)."""

    @property
    def stop(self) -> int:
        return self.start + self.count

    def document_tokens(self) -> tuple[int, int]:
        """[first, end) of the region in document tokens of the stream (BOS excluded)."""
        body = self.ctx_len - int(self.bos)
        return self.start * body, self.stop * body

    def as_dict(self) -> dict:
        return {**asdict(self), "after": list(self.after), "document_tokens": list(self.document_tokens())}

    def describe(self) -> str:
        first, end = self.document_tokens()
        where = f"after {self.after[0]}" if self.after else "from the start (no SAE or adapter records)"
        return (f"stream chunks {self.start}–{self.stop - 1} of {self.ctx_len} tokens (document tokens "
                f"{first:,}–{end - 1:,}), {where}")  # fmt: skip


def analysis_region(uses: list[StreamUse], ctx_len: int, count: int, bos: bool) -> TokenRegion:
    """`count` chunks of `ctx_len` from the first chunk boundary after every token any of `uses` read."""
    body = ctx_len - int(bos)
    ranked = sorted(uses, key=lambda u: -u.document_tokens(bos))
    seen = ranked[0].document_tokens(bos) if ranked else 0
    return TokenRegion(ctx_len, math.ceil(seen / body), count, bos, tuple(u.what for u in ranked))


def stream_chunks(
    source: str, tokenizer, region: TokenRegion, seed: int, text_field: str = "text"
) -> torch.Tensor:
    """The region's chunks [count, ctx_len], packed as every script packs the stream."""
    stream = pack_chunks(load_texts(source, text_field=text_field, seed=seed), tokenizer, region.ctx_len)
    chunks = list(itertools.islice(stream, region.start, region.stop))
    if len(chunks) < region.count:
        raise PreflightError(
            f"lorasae/darkmatter/tokens.py: {source!r} holds {region.start + len(chunks)} chunks of "
            f"{region.ctx_len} tokens, but Dark Matter needs chunks {region.start}–{region.stop - 1} (the ones "
            f"before were read by {region.after[0] if region.after else 'nothing'}): use more text or fewer "
            "--num_tokens / --ce_chunks."
        )
    return torch.stack(chunks)
