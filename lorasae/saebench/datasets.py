"""Labelled text for the probing, SCR and TPP evals, and token chunks for core and autointerp.

Hub (GPU box, network): SAEBench's datasets with SAEBench's selection logic — bias-in-bios
(`LabHC/bias_in_bios`, profession × gender), Amazon reviews (`canrager/amazon_reviews_mcauley_1and5`,
category × rating, and its sentiment variant), AG News and Europarl; `chosen_classes_per_dataset` and the
SCR column pairs as in `sae_bench_utils/dataset_info.py` and `evals/scr_and_tpp/eval_config.py`.

Offline: the built-in world's labelled documents (`lorasae.world.corpus.generate_corpus`): a topic task
over its domains, and a bias-in-bios analogue from its biography documents (profession × gender), which
also feeds SCR and TPP. The same SAEBench selection functions run on both.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from lorasae.model.data import load_texts, pack_chunks

TextsByClass = dict[str, list[str]]
TrainTest = tuple[TextsByClass, TextsByClass]

# --- SAEBench's dataset_info ----------------------------------------------------------------------

PROFESSIONS = (
    "accountant", "architect", "attorney", "chiropractor", "comedian", "composer", "dentist", "dietitian", "dj",
    "filmmaker", "interior_designer", "journalist", "model", "nurse", "painter", "paralegal", "pastor",
    "personal_trainer", "photographer", "physician", "poet", "professor", "psychologist", "rapper",
    "software_engineer", "surgeon", "teacher", "yoga_teacher",
)  # fmt: skip
AMAZON_CATEGORIES = (
    "All_Beauty", "Toys_and_Games", "Cell_Phones_and_Accessories", "Industrial_and_Scientific", "Gift_Cards",
    "Musical_Instruments", "Electronics", "Handmade_Products", "Arts_Crafts_and_Sewing", "Baby_Products",
    "Health_and_Household", "Office_Products", "Digital_Music", "Grocery_and_Gourmet_Food", "Sports_and_Outdoors",
    "Home_and_Kitchen", "Subscription_Boxes", "Tools_and_Home_Improvement", "Pet_Supplies", "Video_Games",
    "Kindle_Store", "Clothing_Shoes_and_Jewelry", "Patio_Lawn_and_Garden", "Unknown", "Books", "Automotive",
    "CDs_and_Vinyl", "Beauty_and_Personal_Care", "Amazon_Fashion", "Magazine_Subscriptions", "Software",
    "Health_and_Personal_Care", "Appliances", "Movies_and_TV",
)  # fmt: skip

DATASET_METADATA: dict[str, dict[str, Any]] = {
    "LabHC/bias_in_bios": {
        "text_column_name": "hard_text",
        "column1_name": "profession",
        "column2_name": "gender",
        "column1_mapping": {name: i for i, name in enumerate(PROFESSIONS)},
        "column2_mapping": {"male": 0, "female": 1},
    },
    "canrager/amazon_reviews_mcauley_1and5": {
        "text_column_name": "text",
        "column1_name": "category",
        "column2_name": "rating",
        "column1_mapping": {name: i for i, name in enumerate(AMAZON_CATEGORIES)},
        "column2_mapping": {1.0: 1.0, 5.0: 5.0},
    },
}

CHOSEN_CLASSES_PER_DATASET: dict[str, list[str]] = {
    "LabHC/bias_in_bios_class_set1": ["0", "1", "2", "6", "9"],
    "LabHC/bias_in_bios_class_set2": ["11", "13", "14", "18", "19"],
    "LabHC/bias_in_bios_class_set3": ["20", "21", "22", "25", "26"],
    "canrager/amazon_reviews_mcauley_1and5": ["1", "2", "3", "5", "6"],
    "canrager/amazon_reviews_mcauley_1and5_sentiment": ["1.0", "5.0"],
    "fancyzhx/ag_news": ["0", "1", "2", "3"],
    "Helsinki-NLP/europarl": ["en", "fr", "de", "es", "nl"],
}
# SAEBench's default list also has codeparrot/github-code, which needs a dataset loading script that
# `datasets` >= 4 no longer runs, so it is left out here.
HUB_SPARSE_PROBING_DATASETS = list(CHOSEN_CLASSES_PER_DATASET)
HUB_TPP_DATASETS = ["LabHC/bias_in_bios_class_set1", "canrager/amazon_reviews_mcauley_1and5"]
SCR_COLUMN1_VALS: dict[str, list[tuple[str, str]]] = {
    "LabHC/bias_in_bios_class_set1": [
        ("professor", "nurse"),
        ("architect", "journalist"),
        ("surgeon", "psychologist"),
        ("attorney", "teacher"),
    ],
    "canrager/amazon_reviews_mcauley_1and5": [
        ("Books", "CDs_and_Vinyl"),
        ("Software", "Electronics"),
        ("Pet_Supplies", "Office_Products"),
        ("Industrial_and_Scientific", "Toys_and_Games"),
    ],
}
SCR_COLUMN2_VALS: dict[str, tuple[Any, Any]] = {
    "LabHC/bias_in_bios_class_set1": ("male", "female"),
    "canrager/amazon_reviews_mcauley_1and5": (1.0, 5.0),
}

# --- SAEBench's selection logic (on any DataFrame) -------------------------------------------------


def ensure_shared_keys(train: TextsByClass, test: TextsByClass) -> TrainTest:
    shared = [k for k in train if k in test]
    return {k: train[k] for k in shared}, {k: test[k] for k in shared}


def balanced_by_column2(
    df: pd.DataFrame, text_col: str, col1: str, col2: str, per_quadrant: int, seed: int
) -> TextsByClass:
    """SAEBench's `get_balanced_dataset`: for each value of col1 whose two col2 groups both hold at least
    `per_quadrant` rows, `per_quadrant` texts from each group (2·per_quadrant per class)."""
    out: TextsByClass = {}
    for value in df[col1].unique():
        sub = df[df[col1] == value]
        groups = sub[col2].value_counts()
        if len(groups) < 2 or groups.min() < per_quadrant:
            continue
        texts: list[str] = []
        for _, group in sub.groupby(col2):
            texts += group.sample(n=per_quadrant, random_state=seed)[text_col].tolist()
        out[str(value)] = texts
    return out


def spurious_corr_data(
    df: pd.DataFrame,
    text_col: str,
    col1: str,
    col2: str,
    col1_vals: tuple[Any, Any],
    col2_vals: tuple[Any, Any],
    per_quadrant: int,
    seed: int,
) -> TextsByClass:
    """SAEBench's `get_spurious_corr_data`: the six SCR sets, keyed with SAEBench's fixed names
    ("male" = col2_vals[0], "professor" = col1_vals[0], ...), each of 2·per_quadrant texts."""
    (c1_pos, c1_neg), (c2_pos, c2_neg) = col1_vals, col2_vals

    def rows(a: Any, b: Any) -> list[str]:
        return df[(df[col1] == a) & (df[col2] == b)][text_col].tolist()

    # SAEBench's names: pos_pos = male professors, pos_neg = male nurses, neg_pos = female professors,
    # neg_neg = female nurses
    pos_pos, pos_neg = rows(c1_pos, c2_pos), rows(c1_neg, c2_pos)
    neg_pos, neg_neg = rows(c1_pos, c2_neg), rows(c1_neg, c2_neg)
    n = per_quadrant
    if min(len(pos_neg), len(neg_pos)) < n or min(len(pos_pos), len(neg_neg)) < 2 * n:
        raise ValueError(
            f"SCR pair {col1_vals} × {col2_vals}: too few rows for {n} per quadrant "
            f"({len(pos_pos)}, {len(pos_neg)}, {len(neg_pos)}, {len(neg_neg)})"
        )
    rng = np.random.default_rng(seed)
    sets = {
        "male / female": pos_pos[:n] + pos_neg[:n],
        "female_data_only": neg_pos[:n] + neg_neg[:n],
        "professor / nurse": pos_pos[:n] + neg_pos[:n],
        "nurse_data_only": pos_neg[:n] + neg_neg[:n],
        "male_professor / female_nurse": pos_pos[: 2 * n],
        "female_nurse_data_only": neg_neg[: 2 * n],
    }
    for texts in sets.values():
        rng.shuffle(texts)
    return sets


def max_scr_per_quadrant(
    df: pd.DataFrame, col1: str, col2: str, col1_vals: Sequence[Any], col2_vals: Sequence[Any]
) -> int:
    """The largest per-quadrant size `spurious_corr_data` accepts for this pair."""
    counts = {(a, b): int(((df[col1] == a) & (df[col2] == b)).sum()) for a in col1_vals for b in col2_vals}
    (a0, a1), (b0, b1) = col1_vals, col2_vals
    return min(counts[(a1, b0)], counts[(a0, b1)], counts[(a0, b0)] // 2, counts[(a1, b1)] // 2)


# --- hub datasets ---------------------------------------------------------------------------------


def _hub_frames(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from datasets import load_dataset

    dataset = load_dataset(name)
    return pd.DataFrame(dataset["train"]), pd.DataFrame(dataset["test"])


def _meta_for(dataset_name: str) -> tuple[str, dict[str, Any]]:
    base = dataset_name.split("_class_set")[0].removesuffix("_sentiment")
    return base, DATASET_METADATA[base]


def _by_label(
    df: pd.DataFrame, label_col: str, text_col: str, classes: Sequence[Any], n: int, seed: int
) -> TextsByClass:
    return {str(c): df[df[label_col] == c][text_col].sample(n=n, random_state=seed).tolist() for c in classes}


def hub_probing_dataset(dataset_name: str, train_size: int, test_size: int, seed: int) -> TrainTest:
    """SAEBench's `get_multi_label_train_test_data` + `filter_dataset` for one of its probing datasets."""
    if dataset_name not in CHOSEN_CLASSES_PER_DATASET:
        raise ValueError(
            f"unsupported probing dataset {dataset_name!r}; choose from {HUB_SPARSE_PROBING_DATASETS}"
        )
    chosen = CHOSEN_CLASSES_PER_DATASET[dataset_name]
    if "bias_in_bios" in dataset_name or dataset_name == "canrager/amazon_reviews_mcauley_1and5":
        base, meta = _meta_for(dataset_name)
        train_df, test_df = _hub_frames(base)
        cols = (meta["text_column_name"], meta["column1_name"], meta["column2_name"])
        train = balanced_by_column2(train_df, *cols, train_size // 4, seed)
        test = balanced_by_column2(test_df, *cols, test_size // 4, seed)
    elif dataset_name == "canrager/amazon_reviews_mcauley_1and5_sentiment":
        train_df, test_df = _hub_frames("canrager/amazon_reviews_mcauley_1and5")
        ratings = [1.0, 5.0]
        train = _by_label(train_df, "rating", "text", ratings, train_size // 2, seed)
        test = _by_label(test_df, "rating", "text", ratings, test_size // 2, seed)
    elif dataset_name == "fancyzhx/ag_news":
        train_df, test_df = _hub_frames(dataset_name)
        labels = [int(c) for c in chosen]
        train = _by_label(train_df, "label", "text", labels, train_size // 2, seed)
        test = _by_label(test_df, "label", "text", labels, test_size // 2, seed)
    else:  # Helsinki-NLP/europarl
        train, test = _europarl(chosen, train_size // 2, test_size // 2, seed)
    train, test = ensure_shared_keys(train, test)
    return {c: train[c] for c in chosen if c in train}, {c: test[c] for c in chosen if c in test}


def _europarl(languages: Sequence[str], train_n: int, test_n: int, seed: int) -> TrainTest:
    """SAEBench's `get_europarl_dataset`: sentences of each language from a pair that contains it."""
    import random

    from datasets import load_dataset

    pairs = {"en": "en-fr", "fr": "fr-it", "de": "de-en", "es": "es-fr", "nl": "nl-pt"}
    rng = random.Random(seed)
    train: TextsByClass = {}
    test: TextsByClass = {}
    for language in languages:
        stream = load_dataset("Helsinki-NLP/europarl", pairs[language], streaming=True, split="train")
        samples = [row["translation"][language] for row in itertools.islice(stream, train_n + test_n + 1)]
        rng.shuffle(samples)
        train[language], test[language] = samples[:train_n], samples[train_n : train_n + test_n]
    return train, test


def hub_scr_runs(dataset_name: str, train_size: int, test_size: int, seed: int) -> dict[str, TrainTest]:
    """SAEBench's SCR data (`dataset_creation.get_train_test_data` with spurious_corr=True) for every
    column-1 pair of the dataset: {run name: (train, test)}."""
    base, meta = _meta_for(dataset_name)
    train_df, test_df = _hub_frames(base)
    text, col1, col2 = meta["text_column_name"], meta["column1_name"], meta["column2_name"]
    runs = {}
    col2_vals = tuple(meta["column2_mapping"][v] for v in SCR_COLUMN2_VALS[dataset_name])
    for pair in SCR_COLUMN1_VALS[dataset_name]:
        col1_vals = tuple(meta["column1_mapping"][v] for v in pair)
        train = spurious_corr_data(train_df, text, col1, col2, col1_vals, col2_vals, train_size // 4, seed)
        test = spurious_corr_data(test_df, text, col1, col2, col1_vals, col2_vals, test_size // 4, seed)
        runs[f"{dataset_name}_scr_{pair[0]}_{pair[1]}"] = ensure_shared_keys(train, test)
    return runs


# --- the built-in world ---------------------------------------------------------------------------

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
        _by_label(train_df, "domain", "text", topics, n_train, seed),
        _by_label(test_df, "domain", "text", topics, n_test, seed),
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


# --- token chunks for core and autointerp ---------------------------------------------------------


def token_chunks(source: str, tokenizer: Any, ctx_len: int, num_chunks: int, seed: int) -> torch.Tensor:
    """The first `num_chunks` packed chunks [N, ctx_len] of `source` (BOS first, EOS between documents),
    as SAEBench's activation store / `load_and_tokenize_dataset` build them."""
    chunks = list(
        itertools.islice(pack_chunks(load_texts(source, seed=seed), tokenizer, ctx_len), num_chunks)
    )
    if len(chunks) < num_chunks:
        raise ValueError(
            f"{source!r} holds only {len(chunks)} chunks of {ctx_len} tokens; {num_chunks} needed"
        )
    return torch.stack(chunks)
