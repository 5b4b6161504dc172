"""A byte-level BPE tokenizer trained locally on the built-in corpus (HF `tokenizers`, no downloads).

Wrapped as a `transformers` fast tokenizer that prepends `<bos>` like Llama and Gemma do, with `<eos>`,
`<pad>` and `<unk>` set; `save_pretrained(folder)` → `AutoTokenizer.from_pretrained(folder)` loads it.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "train_bpe", "wrap_tokenizer", "train_tokenizer"]

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
"""In id order: `<pad>`=0, `<bos>`=1, `<eos>`=2, `<unk>`=3."""


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE (GPT-2 style pre-tokenization) whose post-processor prepends `<bos>`."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B:1", special_tokens=[("<bos>", bos)]
    )
    return tok


def wrap_tokenizer(tok: Tokenizer, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """A `transformers` tokenizer around `tok`: BOS prepended, EOS/PAD/UNK set, right padding."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 4096, model_max_length: int = 1024
) -> PreTrainedTokenizerFast:
    """`train_bpe` then `wrap_tokenizer`."""
    return wrap_tokenizer(train_bpe(texts, vocab_size), model_max_length)
