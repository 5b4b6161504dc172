"""Text sources, GPT-style packing into fixed-length token chunks, and the deterministic
validation/train split shared by every script (SPEC §3.1).

Sources: `builtin` (the generated corpus), a hub dataset (streamed, shuffled with the seed), or a local
`.txt` / `.jsonl` / `.parquet` file or a folder of them. Chunks start with BOS when the tokenizer has one
(Gemma-2 misbehaves without it); documents are separated by EOS.
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lorasae.core.atomic import decode_text
from lorasae.core.errors import CorruptFileError, PreflightError

# RedPajama-V2's own `sample-10B` config needs a loading script, which datasets >= 4 no longer runs;
# this parquet sample of RedPajama-V2 documents is the closest loadable equivalent.
DATASET_ALIASES: dict[str, str] = {
    "redpajama": "sade-adrien/redpajama_v2_sample_10M",
    "pile": "monology/pile-uncopyrighted",
}
DEFAULT_HUB_DATASET = "redpajama"
FASTA_SUFFIXES = (".fasta", ".fa", ".faa")
LOCAL_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet", *FASTA_SUFFIXES)


def fasta_sequences(path: Path) -> Iterator[str]:
    """The sequences of a FASTA file, one per `>` record (lines joined, whitespace dropped); each is a
    document, packed like text (ESM2: `<cls>` first in a chunk, `<eos>` between proteins)."""
    seq: list[str] = []
    started = False
    for line in decode_text(path, path.read_bytes(), DATA_FIX).splitlines():
        if line.startswith(">"):
            if seq:
                yield "".join(seq)
            seq, started = [], True
        elif line.strip() and not line.startswith(";"):
            if not started:
                raise ValueError(f"{path} is not FASTA: sequence lines before the first '>' header")
            seq.append("".join(line.split()))
    if seq:
        yield "".join(seq)


def default_dataset(model_name: str) -> str:
    """The built-in corpus for the built-in model, RedPajama otherwise (the paper's choice); protein
    models have no default (text is no protein data)."""
    if model_name == "esm" or "/esm" in model_name.lower():
        raise ValueError(f"{model_name} is a protein model: give its data with --dataset file.fasta.")
    if (
        model_name == "grok"
    ):  # the registry's grok model: its task's train problems (lorasae/grok_world/data.py)
        from lorasae.grok_world.data import grok_source
        from lorasae.grok_world.tasks import ModularTask

        return grok_source(ModularTask())
    from lorasae.world.sizes import is_builtin_size

    return "builtin" if is_builtin_size(model_name) else DEFAULT_HUB_DATASET


def _local_texts(path: Path, text_field: str) -> Iterator[str]:
    files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"No {'/'.join(LOCAL_SUFFIXES)} files under {path}.")
    for file in files:
        if file.suffix == ".txt":
            # documents are separated by blank lines
            block: list[str] = []
            for line in decode_text(file, file.read_bytes(), DATA_FIX).splitlines():
                if line.strip():
                    block.append(line)
                elif block:
                    yield "\n".join(block)
                    block = []
            if block:
                yield "\n".join(block)
        elif file.suffix in FASTA_SUFFIXES:
            yield from fasta_sequences(file)
        elif file.suffix in (".jsonl", ".json"):
            yield from _jsonl_texts(file, text_field)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(file, columns=[text_field])
            yield from table.column(text_field).to_pylist()


DATA_FIX = "convert it to UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or fix it by hand"


def _jsonl_texts(file: Path, text_field: str) -> Iterator[str]:
    """The `text_field` of each line of a JSON-lines file; a bad line raises an error naming the file,
    the line (and, for bytes that are not UTF-8, the byte offset)."""
    offset = 0
    with open(file, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise CorruptFileError(
                    f"{file}, line {number} is not UTF-8 text (byte offset {offset + err.start}: "
                    f"{err.reason}); {DATA_FIX}."
                ) from err
            offset += len(raw)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorruptFileError(
                    f"{file}, line {number} is not valid JSON ({err.msg}, column {err.colno}); fix it by "
                    f"hand at line {number}."
                ) from err
            if not isinstance(record, dict) or text_field not in record:
                raise CorruptFileError(
                    f"{file}, line {number} has no {text_field!r} field; fix the line by hand or choose the "
                    "field with --text_field."
                )
            yield record[text_field]


def load_texts(source: str, split: str = "train", text_field: str = "text", seed: int = 42) -> Iterator[str]:
    """Documents of `source` in a deterministic (seeded) order."""
    if source == "builtin":
        from lorasae.world.corpus import iter_texts

        return iter_texts(seed=seed)
    path = Path(source).expanduser()
    if path.exists():
        return _local_texts(path, text_field)
    if source.endswith(LOCAL_SUFFIXES):
        raise FileNotFoundError(f"Dataset file {source} does not exist.")
    from datasets import load_dataset

    name = DATASET_ALIASES.get(source, source)
    dataset = load_dataset(name, split=split, streaming=True)
    dataset = dataset.shuffle(seed=seed, buffer_size=10_000)
    return (row[text_field] for row in dataset)


def pack_chunks(
    texts: Iterable[str], tokenizer, ctx_len: int, batch_docs: int = 64, prepend_bos: bool = True
) -> Iterator[torch.Tensor]:
    """Concatenate documents separated by EOS and cut into `ctx_len`-token chunks (BOS first)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("The tokenizer has no EOS token, which packing needs as the document separator.")
    bos = tokenizer.bos_token_id if prepend_bos else None
    body = ctx_len - (1 if bos is not None else 0)
    buffer: list[int] = []
    iterator = iter(texts)
    while True:
        docs = list(itertools.islice(iterator, batch_docs))
        if not docs:
            return
        # verbose=False: whole documents are longer than the model's window before packing cuts them
        for ids in tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"]:
            buffer.extend(ids)
            buffer.append(eos)
        start = 0
        while len(buffer) - start >= body:
            piece = buffer[start : start + body]
            start += body
            yield torch.tensor(([bos] if bos is not None else []) + piece, dtype=torch.long)
        buffer = buffer[start:]


@dataclass
class TokenSplit:
    """Validation = the first `num_val_chunks` chunks of the packed stream; train = the chunks after them.
    Training chunks are streamed again from the source on demand, so resuming can skip to any position;
    the first `train_chunks` continues the stream `load_token_split` packed the validation chunks from
    (the same chunks, without packing the validation ones a second time)."""

    source: str
    tokenizer: object
    ctx_len: int
    seed: int
    val: torch.Tensor
    text_field: str = "text"
    after_val: Iterator[torch.Tensor] | None = field(default=None, repr=False, compare=False)
    """The packed stream right after the validation chunks, taken by the first `train_chunks`."""

    @property
    def num_val_chunks(self) -> int:
        return len(self.val)

    def _stream(self) -> Iterator[torch.Tensor]:
        return pack_chunks(
            load_texts(self.source, text_field=self.text_field, seed=self.seed), self.tokenizer, self.ctx_len
        )

    def train_chunks(self, skip: int = 0) -> Iterator[torch.Tensor]:
        """Train chunks from position `skip` on; cycles (with a warning) when the source runs out."""
        epoch = 0
        while True:
            rest, self.after_val = self.after_val, None
            stream = rest if rest is not None else itertools.islice(self._stream(), self.num_val_chunks, None)
            produced = 0
            for chunk in stream:
                produced += 1
                if skip > 0:
                    skip -= 1
                    continue
                yield chunk
            if produced == 0:
                raise ValueError(
                    f"Dataset {self.source!r} has no training chunks after the validation split."
                )
            epoch += 1
            warnings.warn(f"{self.source}: training data exhausted, starting epoch {epoch + 1}", stacklevel=2)

    def train_batches(self, batch_size: int, skip_chunks: int = 0) -> Iterator[torch.Tensor]:
        chunks = self.train_chunks(skip_chunks)
        while True:
            yield torch.stack([next(chunks) for _ in range(batch_size)])


def load_token_split(
    source: str,
    tokenizer,
    ctx_len: int = 1024,
    num_val_tokens: int = 1_000_000,
    seed: int = 42,
    text_field: str = "text",
) -> TokenSplit:
    """The split every script shares: same arguments → same validation and train chunks. A `grok:<task>`
    source gives its train problems instead (`lorasae.grok_world.data.GrokSplit`, the same interface)."""
    if source.startswith("grok:"):
        from lorasae.grok_world.data import grok_token_split

        return grok_token_split(source, ctx_len, num_val_tokens, seed)  # type: ignore[return-value]
    num_val_chunks = max(1, -(-num_val_tokens // ctx_len))
    split = TokenSplit(
        source, tokenizer, ctx_len, seed, torch.empty(0, ctx_len, dtype=torch.long), text_field
    )
    stream = split._stream()
    val = list(itertools.islice(stream, num_val_chunks))
    if len(val) < num_val_chunks:
        have = len(val) * ctx_len
        fix = (
            f"lower --num_val_tokens to at most {have - ctx_len} (training needs chunks after the "
            f"validation ones) or use more text"
            if len(val) > 1
            else f"it needs at least {2 * ctx_len:,} tokens (one validation and one training chunk of "
            f"--ctx_len {ctx_len}): use more text or a lower --ctx_len"
        )
        raise PreflightError(
            f"Dataset {source!r} holds only {len(val)} chunk(s) of {ctx_len} tokens ({have:,} tokens), fewer "
            f"than the {num_val_chunks} ({num_val_chunks * ctx_len:,} tokens) needed for validation; {fix}."
        )
    split.val, split.after_val = torch.stack(val), stream
    return split
