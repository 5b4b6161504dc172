"""The built-in world: a generated labelled corpus with stdlib prose, a local BPE tokenizer and a tiny
Llama pretrained on them on first use (SPEC §5). Nothing here touches the network."""

from .corpus import (
    DEFAULT_N_DOCS,
    DOMAIN_KEYWORDS,
    DOMAINS,
    GENDERS,
    HELDOUT_FRACTION,
    LABELLED_DOMAINS,
    PROFESSIONS,
    Document,
    QuizFact,
    build_world,
    domain_documents,
    domain_texts,
    generate_corpus,
    iter_texts,
    quiz_facts,
    shuffled_corpus,
    split_corpus,
)
from .tiny_model import TinyWorldConfig, default_root, ensure_tiny_model, world_info, world_seed
from .tokenizer import train_tokenizer

__all__ = [
    "DEFAULT_N_DOCS",
    "DOMAIN_KEYWORDS",
    "DOMAINS",
    "GENDERS",
    "HELDOUT_FRACTION",
    "LABELLED_DOMAINS",
    "PROFESSIONS",
    "Document",
    "QuizFact",
    "TinyWorldConfig",
    "build_world",
    "default_root",
    "domain_documents",
    "domain_texts",
    "ensure_tiny_model",
    "generate_corpus",
    "iter_texts",
    "quiz_facts",
    "shuffled_corpus",
    "split_corpus",
    "train_tokenizer",
    "world_info",
    "world_seed",
]
