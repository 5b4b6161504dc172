"""The offline labelled datasets: the built-in world's documents (`lorasae.world.corpus`): a topic task
over its domains, and a bias-in-bios analogue from its biography documents (profession × gender), which
also feeds SCR and TPP. SAEBench's selection functions (`datasets.py`) run on them as on the hub's.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lorasae.saebench.datasets import (
    SCR_COLUMN1_VALS,
    TrainTest,
    balanced_by_column2,
    by_label,
    ensure_shared_keys,
    max_scr_per_quadrant,
    spurious_corr_data,
)

# Topics of the built-in `builtin/domains` probing task (biography has its own task).
BUILTIN_TOPICS = ("science", "law", "medical", "recipes", "verse")
# The built-in biographies use SAEBench's bias-in-bios SCR pairs (its eight professions are exactly these).
BUILTIN_SCR_PAIRS = SCR_COLUMN1_VALS["LabHC/bias_in_bios_class_set1"]
BUILTIN_GENDERS = ("male", "female")
BUILTIN_TPP_PROFESSIONS = ("professor", "nurse", "architect", "journalist", "surgeon")


def builtin_frames(
    train_size: int,
    test_size: int,
    seed: int,
    world_seed: int = 0,
    documents: Iterable[Any] | None = None,
    test_fraction: float = 0.25,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test tables (text, domain, profession, gender) of built-in documents, no document in both.

    Fresh documents of world `world_seed` (`corpus.domain_documents`: the model's world, not its training
    documents), enough biographies for every (profession, gender) quadrant of the requested sizes.
    `documents` (objects with `text`, `domain`, `attrs`) replaces them (tests)."""
    if documents is None:
        from lorasae.world.corpus import PROFESSIONS, domain_documents

        per_quadrant = 2 * (train_size // 4 + test_size // 4)  # SCR's biased sets take two quadrants' worth
        n_bios = int(1.5 * per_quadrant * len(PROFESSIONS) * len(BUILTIN_GENDERS)) + 16
        n_topic = int(1.5 * (train_size + test_size)) + 8
        documents = domain_documents("biography", n_bios, world_seed)
        for topic in BUILTIN_TOPICS:
            documents = [*documents, *domain_documents(topic, n_topic, world_seed)]
    rows = [{"text": d.text, "domain": d.domain, **dict(getattr(d, "attrs", None) or {})} for d in documents]
    if not rows:
        raise ValueError("no built-in documents")
    df = pd.DataFrame(rows)
    order = np.random.default_rng(seed).permutation(len(df))
    cut = int(round(len(df) * (1 - test_fraction)))
    return df.iloc[order[:cut]].reset_index(drop=True), df.iloc[order[cut:]].reset_index(drop=True)


def biographies(df: pd.DataFrame) -> pd.DataFrame:
    """Biography documents that carry both a profession and a gender."""
    if not {"profession", "gender"} <= set(df.columns):
        raise ValueError(
            "the built-in corpus has no biography documents labelled with profession and gender, which the "
            "bias-in-bios style probing, SCR and TPP tasks need"
        )
    return df.dropna(subset=["profession", "gender"])


def _fit(requested: int, available: int, what: str, minimum: int = 4) -> int:
    if available < minimum:
        raise ValueError(f"too few built-in documents for {what} ({available} < {minimum} per group)")
    if available < requested:
        warnings.warn(f"{what}: {available} per group (fewer than the {requested} asked for)", stacklevel=3)
    return min(requested, available)


def _min_count(df: pd.DataFrame, column: str, values: Sequence[str]) -> int:
    counts = df[column].value_counts()
    return int(min(counts.get(v, 0) for v in values))


def _min_quadrant(df: pd.DataFrame, professions: Sequence[str]) -> int:
    counts = df.groupby(["profession", "gender"]).size()
    return int(min(counts.get((p, g), 0) for p in professions for g in BUILTIN_GENDERS))


def builtin_topics_dataset(
    train_df: pd.DataFrame, test_df: pd.DataFrame, train_size: int, test_size: int, seed: int
) -> TrainTest:
    """`builtin/domains`: the topic of a document (SAEBench's ag_news-style task), train_size/2 texts per class."""
    topics = [t for t in BUILTIN_TOPICS if t in set(train_df["domain"]) and t in set(test_df["domain"])]
    if len(topics) < 2:
        raise ValueError(f"the built-in documents hold fewer than two of the topics {BUILTIN_TOPICS}")
    n_train = _fit(train_size // 2, _min_count(train_df, "domain", topics), "builtin/domains train")
    n_test = _fit(test_size // 2, _min_count(test_df, "domain", topics), "builtin/domains test")
    return (
        by_label(train_df, "domain", "text", topics, n_train, seed),
        by_label(test_df, "domain", "text", topics, n_test, seed),
    )


def builtin_bios_dataset(
    train_df: pd.DataFrame, test_df: pd.DataFrame, train_size: int, test_size: int, seed: int
) -> TrainTest:
    """`builtin/bias_in_bios`: the profession of a biography, balanced by gender (SAEBench's
    `get_balanced_dataset` on bias-in-bios), for `BUILTIN_TPP_PROFESSIONS`."""
    tr, te = biographies(train_df), biographies(test_df)
    professions = list(BUILTIN_TPP_PROFESSIONS)
    tr, te = tr[tr["profession"].isin(professions)], te[te["profession"].isin(professions)]
    q_train = _fit(train_size // 4, _min_quadrant(tr, professions), "builtin/bias_in_bios train")
    q_test = _fit(test_size // 4, _min_quadrant(te, professions), "builtin/bias_in_bios test")
    train = balanced_by_column2(tr, "text", "profession", "gender", q_train, seed)
    test = balanced_by_column2(te, "text", "profession", "gender", q_test, seed)
    train, test = ensure_shared_keys(train, test)
    return {p: train[p] for p in professions if p in train}, {p: test[p] for p in professions if p in test}


def builtin_probing_datasets(
    train_size: int, test_size: int, seed: int, world_seed: int = 0, documents: Iterable[Any] | None = None
) -> dict[str, TrainTest]:
    """The offline sparse-probing datasets: `builtin/domains` and `builtin/bias_in_bios`."""
    train_df, test_df = builtin_frames(train_size, test_size, seed, world_seed, documents)
    return {
        "builtin/domains": builtin_topics_dataset(train_df, test_df, train_size, test_size, seed),
        "builtin/bias_in_bios": builtin_bios_dataset(train_df, test_df, train_size, test_size, seed),
    }


def builtin_tpp_datasets(
    train_size: int, test_size: int, seed: int, world_seed: int = 0, documents: Iterable[Any] | None = None
) -> dict[str, TrainTest]:
    """TPP on the built-in biographies (SAEBench runs TPP on bias-in-bios set 1 and Amazon reviews)."""
    train_df, test_df = builtin_frames(train_size, test_size, seed, world_seed, documents)
    return {"builtin/bias_in_bios": builtin_bios_dataset(train_df, test_df, train_size, test_size, seed)}


def builtin_scr_runs(
    train_size: int, test_size: int, seed: int, world_seed: int = 0, documents: Iterable[Any] | None = None
) -> dict[str, TrainTest]:
    """SCR on the built-in biographies: SAEBench's bias-in-bios profession pairs × (male, female).
    Pairs the documents cannot fill are skipped with a warning."""
    train_df, test_df = builtin_frames(train_size, test_size, seed, world_seed, documents)
    bios_train, bios_test = biographies(train_df), biographies(test_df)
    runs: dict[str, TrainTest] = {}
    skipped: list[str] = []
    for pair in BUILTIN_SCR_PAIRS:
        q_train = max_scr_per_quadrant(bios_train, "profession", "gender", pair, BUILTIN_GENDERS)
        q_test = max_scr_per_quadrant(bios_test, "profession", "gender", pair, BUILTIN_GENDERS)
        if min(q_train, q_test) < 4:
            skipped.append(f"{pair[0]}/{pair[1]} ({q_train} train, {q_test} test per quadrant)")
            continue
        q_train = _fit(train_size // 4, q_train, f"SCR {pair[0]}/{pair[1]} train")
        q_test = _fit(test_size // 4, q_test, f"SCR {pair[0]}/{pair[1]} test")
        cols = ("text", "profession", "gender", pair, BUILTIN_GENDERS)
        runs[f"builtin/bias_in_bios_scr_{pair[0]}_{pair[1]}"] = (
            spurious_corr_data(bios_train, *cols, q_train, seed),
            spurious_corr_data(bios_test, *cols, q_test, seed),
        )
    if skipped:
        warnings.warn(
            f"SCR: skipped profession pairs with too few biographies: {'; '.join(skipped)}", stacklevel=2
        )
    if not runs:
        raise ValueError("too few built-in biographies for any SCR profession pair")
    return runs
