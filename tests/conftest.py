"""Shared fixtures: tiny random Llama / Gemma-2 models, a small character tokenizer, an isolated output root.
Tests never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the stdlib prose cache (lorasae/world/prose.py) inside the repo, not in the home folder
os.environ.setdefault("LORASAE_CACHE", str(Path(__file__).resolve().parent.parent / ".cache" / "lorasae"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

VOCAB = 96


def make_tiny_model(arch: str = "llama", n_layers: int = 3, d: int = 32, vocab: int = VOCAB, seed: int = 0):
    """A randomly initialised causal LM of the given architecture (no download)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=2 * d,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=d // 4,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "gemma2":
        model = Gemma2ForCausalLM(Gemma2Config(**common, sliding_window=16, attn_implementation="eager"))
    else:
        raise ValueError(arch)
    return model.eval()


def make_char_tokenizer():
    """A character-level fast tokenizer with BOS/EOS/PAD, built in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 32 + VOCAB - 4)]
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3} | {c: i + 4 for i, c in enumerate(chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(params=["llama", "gemma2"])
def tiny_model(request):
    return make_tiny_model(request.param)


@pytest.fixture
def one_thread():
    """One torch thread for the test (use with `pytestmark = pytest.mark.usefixtures("one_thread")`):
    tiny models run many small matmuls, which one thread does faster than two contending ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def char_tokenizer():
    return make_char_tokenizer()


@pytest.fixture
def out_root(tmp_path, monkeypatch):
    """Point every output path (saved_saes/, data/, plots/, ...) at a temporary folder."""
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    return tmp_path


SMALL_WORLD_TOKENS = 400_000  # below ~300k the test world stays near unigram level (no features to find)


@pytest.fixture(scope="session")
def small_world():
    """Folder of a small built-in world (tokenizer + Llama model), built once and cached under
    `.cache/test_world-<config hash>/` (git-ignored), so later sessions reuse it."""
    import dataclasses
    import hashlib
    import json
    from pathlib import Path

    from lorasae.world.tiny_model import TinyWorldConfig, ensure_tiny_model

    config = dataclasses.replace(TinyWorldConfig.for_tests(), train_tokens=SMALL_WORLD_TOKENS)
    digest = hashlib.sha1(json.dumps(dataclasses.asdict(config), sort_keys=True).encode()).hexdigest()[:10]
    root = Path(__file__).resolve().parent.parent / ".cache" / f"test_world-{digest}"
    return ensure_tiny_model(root=root, config=config, progress=False)


@pytest.fixture(scope="session")
def small_world_s(small_world):
    """`small_world`'s half-width sibling (`lorasae.world.sizes`, the built-in `tiny-s` at test size),
    built beside it on the same corpus and tokenizer."""
    import dataclasses
    from pathlib import Path

    from lorasae.world.sizes import size_config
    from lorasae.world.tiny_model import TinyWorldConfig, ensure_tiny_model

    config = dataclasses.replace(TinyWorldConfig.for_tests(), train_tokens=SMALL_WORLD_TOKENS)
    root = Path(small_world).parent
    return ensure_tiny_model(root=root, config=size_config("tiny-s", config), progress=False, size="tiny-s")


@pytest.fixture(scope="session")
def world_model(small_world):
    """`small_world`'s model folder as a Path (what the end-to-end tests on the built-in world load)."""
    from pathlib import Path

    return Path(small_world)


@pytest.fixture(autouse=True)
def _no_deferred_records_across_tests():
    """Records deferred to the end of a command (`lorasae.core.records.defer_inferred_record`) never leak from
    one test into the next."""
    from lorasae.core.records import drop_deferred

    drop_deferred()
    yield
    drop_deferred()


@pytest.fixture(autouse=True)
def _no_forward_cache_across_tests():
    """The process's store of frozen-model outputs (`lorasae.model.forward_cache`) starts empty in every
    test: a test that patches a model function sees its patch, not a value another test stored."""
    from lorasae.model.forward_cache import shared_forward_cache

    shared_forward_cache().clear()
    yield
    shared_forward_cache().clear()


@pytest.fixture
def fast_names(monkeypatch):
    """The fast test runs' settings (`sae_train_helpers.fast_args`: 3840 tokens of 2 × 32 of a local
    `data.jsonl`, 128 validation tokens) taken as train_sae.py's naming defaults, so those runs keep the
    plain folder names the tests read (`lorasae.train.sae_names`; tests/test_sae_variant_names.py tests
    the naming itself, with the real defaults)."""
    from pathlib import Path

    from lorasae.core.paths import portable
    from lorasae.train import sae_names

    real = sae_names.naming_defaults

    def fast(cfg, shape):
        out = real(cfg, shape) | {"ctx_len": 32, "batch_size": 2, "num_val_tokens": 128}
        if cfg.objective != "kl":
            out["num_train_tokens"] = 3840
        if cfg.dataset and Path(str(cfg.dataset)).name == "data.jsonl":
            out["dataset"] = portable(cfg.dataset)  # as the name reads a local file
        return out

    monkeypatch.setattr(sae_names, "naming_defaults", fast)
