"""Dark Matter's tokens are tokens that neither the SAEs nor the adapter read (issue 26 item 8): the region's
arithmetic from the runs' records, and a direct check on a stream whose every token is numbered by its
place, read the way train_sae, train_lora and the error SAEs read it."""

import itertools

import pytest
import torch

from lorasae.core.errors import PreflightError
from lorasae.core.records import write_record
from lorasae.darkmatter.error_saes import train_error_saes
from lorasae.darkmatter.info import SAEInfo
from lorasae.darkmatter.linear import fit_linear
from lorasae.darkmatter.tokens import (
    StreamUse,
    adapter_stream_use,
    analysis_region,
    sae_stream_use,
    stream_chunks,
)
from lorasae.model.data import load_token_split
from lorasae.sae import SaeConfig, TopKSAE

BOS, EOS = 0, 1


class NumberTokenizer:
    """Each word is a number n and becomes token n + 2: a token's id tells its place in the stream."""

    bos_token_id, eos_token_id = BOS, EOS

    def __call__(self, docs, add_special_tokens=False, verbose=False):
        return {"input_ids": [[int(w) + 2 for w in doc.split()] for doc in docs]}


@pytest.fixture
def numbered(tmp_path):
    """20,000 document tokens, 0…19,999 in order, in documents of 40 words."""
    path = tmp_path / "numbers.txt"
    docs = [" ".join(str(i) for i in range(j, j + 40)) for j in range(0, 20_000, 40)]
    path.write_text("\n\n".join(docs) + "\n")
    return str(path)


def _read_by(source, ctx_len, num_val_tokens, train_chunks) -> set[int]:
    """Document tokens a run reads: its validation chunks and its first `train_chunks` training chunks."""
    split = load_token_split(source, NumberTokenizer(), ctx_len, num_val_tokens, seed=0)
    chunks = [*split.val, *itertools.islice(split.train_chunks(), train_chunks)]
    ids = torch.cat(chunks)
    return set((ids[ids > EOS] - 2).tolist())


def test_region_starts_at_the_first_chunk_boundary_after_every_run():
    sae = StreamUse("SAE", ctx_len=64, chunks=2 + 10)  # 12 chunks of 63 document tokens: 756
    adapter = StreamUse("adapter", ctx_len=32, chunks=1 + 32)  # 33 × 31 = 1023
    region = analysis_region([sae, adapter], ctx_len=48, count=5, bos=True)
    assert region.start == 22 and region.after == ("adapter", "SAE")  # ceil(1023 / 47)
    first, end = region.document_tokens()
    assert first >= 1023 > first - 47 and end == (22 + 5) * 47
    assert analysis_region([], ctx_len=48, count=5, bos=True).start == 0
    assert analysis_region([sae], 64, 3, bos=False).start == 12  # no BOS: 12 × 64 tokens, chunks of 64


def test_records_give_what_the_sae_and_the_adapter_read(tmp_path):
    folder = tmp_path / "sae"
    TopKSAE(SaeConfig(d_in=8, d_sae=16, k=2, hook_layer=0)).save(
        folder, train_tokens=10 * 64, ctx_len=64, num_val_tokens=100
    )
    assert sae_stream_use(folder) == StreamUse(f"SAE {folder}", 64, 2 + 10)
    TopKSAE(SaeConfig(d_in=8, d_sae=16, k=2, hook_layer=0)).save(tmp_path / "bare")
    assert sae_stream_use(tmp_path / "bare") is None and sae_stream_use("gemma-scope-2b-pt-res/x") is None
    adapter = tmp_path / "saved_models" / "m" / "tag" / "peft_0-1" / "rank_4"
    adapter.mkdir(parents=True)
    settings = {"ctx_len": 32, "num_val_tokens": 32, "batch_size": 4}
    write_record(adapter, "lora_adapter", {"num_train_examples": 30, "settings": settings})
    # 1 validation chunk + 8 batches of 4 sequences (the last batch is whole)
    assert adapter_stream_use(adapter) == StreamUse(f"adapter {adapter}", 32, 1 + 32)
    bare = tmp_path / "saved_models" / "m" / "tag" / "peft_0-1" / "rank_8"  # made before run records
    bare.mkdir()
    assert adapter_stream_use(bare) is None and adapter_stream_use(None) is None


def test_analysed_tokens_are_none_the_sae_or_the_adapter_read(numbered):
    """Direct check: the SAE (ctx 64, 2 validation chunks, 10 training chunks) and the adapter (ctx 32,
    1 validation chunk, 32 training sequences) read the stream through TokenSplit; the region's chunks
    (ctx 48) hold none of their tokens and begin within one chunk of the last one they read."""
    seen = _read_by(numbered, 64, 128, 10) | _read_by(numbered, 32, 32, 32)
    region = analysis_region([StreamUse("SAE", 64, 12), StreamUse("adapter", 32, 33)], 48, count=6, bos=True)
    chunks = stream_chunks(numbered, NumberTokenizer(), region, seed=0)
    assert chunks.shape == (6, 48) and (chunks[:, 0] == BOS).all()
    analysed = set((chunks[chunks > EOS] - 2).tolist())
    assert not analysed & seen
    assert max(seen) < min(analysed) <= max(seen) + 1 + 47
    first, end = region.document_tokens()  # number n sits at place n + n // 40 (an EOS after every 40)
    assert first <= min(analysed) + min(analysed) // 40 and max(analysed) + max(analysed) // 40 < end


def test_error_saes_train_after_the_region(numbered, monkeypatch):
    """The error SAEs' training chunks (after train_sae's validation chunks) start where the region ends."""
    import lorasae.train.sae_trainer as trainer

    captured = []

    def fake_train_sae(cfg):
        captured.append(cfg)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train_sae", fake_train_sae)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    info = SAEInfo.from_arrays(x, 0.9 * x, layer=0, ctx_len=48, num_chunks=2)
    with pytest.raises(KeyboardInterrupt):
        train_error_saes("m", numbered, info, fit_linear(x, 0.1 * x), [1], 2, 10, 0.5, after_chunks=28)
    cfg = captured[0]
    assert cfg.ctx_len == 48 and -(-cfg.num_val_tokens // cfg.ctx_len) == 28


def test_a_stream_too_short_for_the_region_says_what_to_do(numbered):
    region = analysis_region([StreamUse("SAE", 64, 330)], 48, count=10, bos=True)
    with pytest.raises(PreflightError, match="use more text or fewer --num_tokens"):
        stream_chunks(numbered, NumberTokenizer(), region, seed=0)
