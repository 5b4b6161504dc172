"""The built-in world's config (`TinyWorldConfig`) and the built-in model's sizes: `tiny` (the default) and `tiny-s`, its half-width sibling trained on the same
corpus and tokenizer, on half the tokens, by the same builder (`tiny_model.build_tiny_model`). Each size is one
rule that turns a base `TinyWorldConfig` into that size's config, so a test world (a small base config)
gets a small sibling the same way the default world gets its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from transformers import LlamaConfig


@dataclass(frozen=True)
class TinyWorldConfig:
    """Everything that determines the built-in world (defaults: ~2.5 minutes on 2 CPU cores)."""

    seed: int = 0
    """The world seed (entities, facts, documents); `corpus.split_corpus(seed)` gives the held-out set."""
    n_docs: int | None = None
    """Generated documents in the corpus (None: `corpus.DEFAULT_N_DOCS`); stdlib prose comes on top."""
    vocab_size: int = 4096
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    ctx_len: int = 128
    tie_embeddings: bool = True
    train_tokens: int = 1_200_000
    """Tokens of pretraining (steps = train_tokens // (batch_size * ctx_len)). 1.2M at lr 6e-3 (validation CE
    2.17, 147 s on 2 AMD EPYC cores) rather than 1.6M at 3e-3 (2.05, 207 s): the 60 s went to keeping `make
    demo` within 12 minutes (issue 30); 1.2M at 3e-3 gave 2.24."""
    batch_size: int = 32
    lr: float = 6e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    num_threads: int | None = None
    """torch CPU threads while building (None: the cores available to this process, at most 8)."""

    @classmethod
    def for_tests(cls, seed: int = 0) -> TinyWorldConfig:
        """A very small, fast world (seconds) for unit tests: same pipeline, tiny sizes."""
        return cls(
            seed=seed,
            n_docs=800,
            vocab_size=512,
            d_model=32,
            n_layers=2,
            n_heads=2,
            d_ff=64,
            ctx_len=64,
            train_tokens=160_000,
            batch_size=8,
            lr=1e-2,
            warmup_steps=10,
            num_threads=1,
        )

    def llama_config(self, vocab_size: int) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.d_model,
            intermediate_size=self.d_ff,
            num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_heads,
            max_position_embeddings=self.ctx_len,
            tie_word_embeddings=self.tie_embeddings,
            rms_norm_eps=1e-5,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )


def _same(base: TinyWorldConfig) -> TinyWorldConfig:
    return base


def _half_width(base: TinyWorldConfig) -> TinyWorldConfig:
    """Half the residual width and MLP width, the same depth, head width, corpus and vocabulary; half the
    pretraining tokens at twice the learning rate. A family's smaller members are trained on fewer tokens
    (Gemma-2: 2B on 2T, 9B on 8T), and a narrower model takes a larger Adam step (muP: ∝ 1/width); half the
    tokens keeps the second size's build under a minute on 2 cores (issue 30). Measured (one build each, with
    tiny at 1.6M tokens and lr 3e-3): validation CE 2.35 with tiny's tokens and rate, 3.30 on half the tokens at
    tiny's rate, 2.88 with the doubled rate (tiny: 2.05); with tiny at 1.2M and 6e-3: 3.02 (tiny: 2.17)."""
    heads = max(1, base.n_heads // 2)
    return dataclasses.replace(
        base,
        d_model=base.d_model // 2,
        d_ff=base.d_ff // 2,
        n_heads=heads,
        train_tokens=base.train_tokens // 2,
        lr=base.lr * 2,
    )


BUILTIN_SIZES: dict[str, Callable[[TinyWorldConfig], TinyWorldConfig]] = {
    "tiny": _same,
    "tiny-s": _half_width,
}
"""Registry key of each built-in size → its config made from the base (`TinyWorldConfig()` by default)."""


def size_config(size: str, base: TinyWorldConfig | None = None) -> TinyWorldConfig:
    """The config of built-in size `size` (`tiny`, `tiny-s`) made from `base` (default: the built-in one)."""
    if size not in BUILTIN_SIZES:
        raise ValueError(f"Unknown built-in model size {size!r}: use one of {sorted(BUILTIN_SIZES)}.")
    return BUILTIN_SIZES[size](base or TinyWorldConfig())


def is_builtin_size(name: str) -> bool:
    """Whether `name` is the registry key of a built-in model size."""
    return str(name).strip() in BUILTIN_SIZES
