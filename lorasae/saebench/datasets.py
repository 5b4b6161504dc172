"""Labelled text for the probing, SCR and TPP evals (shared part), and token chunks for core and autointerp.

SAEBench's dataset info (`sae_bench_utils/dataset_info.py`: `chosen_classes_per_dataset`, the bias-in-bios
and Amazon column mappings) and the SCR column pairs (`evals/scr_and_tpp/eval_config.py`), and SAEBench's
selection logic on any DataFrame. The loaders that use them: `hub_datasets.py` (SAEBench's own datasets,
GPU box with network) and `builtin_datasets.py` (the built-in world's documents, offline).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
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


def by_label(
    df: pd.DataFrame, label_col: str, text_col: str, classes: Sequence[Any], n: int, seed: int
) -> TextsByClass:
    """`n` texts of each class in `classes` (rows whose `label_col` is that class), keyed `str(class)`."""
    return {str(c): df[df[label_col] == c][text_col].sample(n=n, random_state=seed).tolist() for c in classes}


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
