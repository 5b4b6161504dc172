"""SAEBench's labelled datasets from the hub (GPU box, network), with SAEBench's selection logic:
bias-in-bios (`LabHC/bias_in_bios`, profession × gender), Amazon reviews
(`canrager/amazon_reviews_mcauley_1and5`, category × rating, and its sentiment variant), AG News and
Europarl; the class choices and SCR pairs are in `datasets.py`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lorasae.saebench.datasets import (
    CHOSEN_CLASSES_PER_DATASET,
    DATASET_METADATA,
    HUB_SPARSE_PROBING_DATASETS,
    SCR_COLUMN1_VALS,
    SCR_COLUMN2_VALS,
    TextsByClass,
    TrainTest,
    balanced_by_column2,
    by_label,
    ensure_shared_keys,
    spurious_corr_data,
)


def _hub_frames(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from datasets import load_dataset

    dataset = load_dataset(name)
    return pd.DataFrame(dataset["train"]), pd.DataFrame(dataset["test"])


def _meta_for(dataset_name: str) -> tuple[str, dict[str, Any]]:
    base = dataset_name.split("_class_set")[0].removesuffix("_sentiment")
    return base, DATASET_METADATA[base]


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
        train = by_label(train_df, "rating", "text", ratings, train_size // 2, seed)
        test = by_label(test_df, "rating", "text", ratings, test_size // 2, seed)
    elif dataset_name == "fancyzhx/ag_news":
        train_df, test_df = _hub_frames(dataset_name)
        labels = [int(c) for c in chosen]
        train = by_label(train_df, "label", "text", labels, train_size // 2, seed)
        test = by_label(test_df, "label", "text", labels, test_size // 2, seed)
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
