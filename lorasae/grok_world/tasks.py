"""Modular arithmetic tasks for the grokking world (seed train-SAE, SPEC §8), generated on the fly.

Every problem is the 3-token sequence ``a b =`` and its answer ``c`` is predicted at the last position.
Token ids: ``0 … p-1`` are the numbers, ``p`` is ``=`` and ``p + 1`` is padding (never in a problem; it
is there so the saved tokenizer has an unknown/pad token), so the vocabulary has ``p + 2`` entries (99
for the default p = 97, the seed's ``vocab_size``). The split is a seeded permutation of all pairs: the
same (task, prime, train_frac, seed) always gives the same train and test sets.

Two choices differ from the seed and both are available (docs/DEVIATIONS.md, train-SAE section):
- ``division`` is modular division, c = a · b⁻¹ mod p (c·b ≡ a), the grokking literature's task; the seed
  computes ``(a // b) % p`` (the integer quotient), which is ``--task floordiv`` here.
- the default holds out 60 % of the pairs as the test set (grokking = generalizing to unseen problems); the
  seed trains and tests on every pair, which is ``--train_frac 1`` here (test set = train set = all pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

TASKS = ("addition", "subtraction", "multiplication", "division", "floordiv", "conditional")
DIVISIONS = ("division", "floordiv")
"""The tasks without b = 0 (p · (p − 1) pairs)."""


def modular_inverse(b: int, p: int) -> int:
    """b⁻¹ mod p for a prime p (Fermat: b^(p-2)); b must not be 0 mod p."""
    if b % p == 0:
        raise ZeroDivisionError(f"0 has no inverse modulo {p}")
    return pow(b, p - 2, p)


def _answers(task: str, a: Tensor, b: Tensor, p: int) -> Tensor:
    """c for each pair (vectorised; division uses the table of inverses)."""
    if task == "addition":
        return (a + b) % p
    if task == "subtraction":
        return (a - b) % p
    if task == "multiplication":
        return (a * b) % p
    if task == "division":
        inverses = torch.tensor([0] + [modular_inverse(x, p) for x in range(1, p)], dtype=torch.long)
        return (a * inverses[b]) % p
    if task == "floordiv":  # the seed's rule: integer quotient, then mod p
        return torch.div(a, b, rounding_mode="floor") % p
    if task == "conditional":  # a + b when a is even, a - b when a is odd: two rules keyed on one input
        return torch.where(a % 2 == 0, (a + b) % p, (a - b) % p)
    raise ValueError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")


@dataclass(frozen=True)
class ModularTask:
    """One modular arithmetic task over a prime with a deterministic train/test split of all pairs."""

    task: str = "addition"
    """addition | subtraction | multiplication | division (a · b⁻¹ mod p) | floordiv ((a // b) mod p, the
    seed's "division") | conditional (a+b if a even, else a−b)."""
    prime: int = 97
    """The modulus p (numbers 0 … p−1)."""
    train_frac: float = 0.4
    """Share of all pairs used for training; the rest is the test set. 1 = the seed's setting: train on
    every pair and test on the same pairs (test accuracy is then train accuracy)."""
    seed: int = 0
    """Seed of the split's permutation."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}: choose one of {', '.join(TASKS)}")
        if self.prime < 2 or any(self.prime % q == 0 for q in range(2, int(self.prime**0.5) + 1)):
            raise ValueError(f"--prime must be a prime, got {self.prime}")
        if not 0 < self.train_frac <= 1:
            raise ValueError(
                f"--train_frac must be in (0, 1], got {self.train_frac} (1 = test on the train set)"
            )

    @property
    def eq_token(self) -> int:
        return self.prime

    @property
    def pad_token(self) -> int:
        return self.prime + 1

    @property
    def vocab_size(self) -> int:
        return self.prime + 2

    @property
    def name(self) -> str:
        """Short label used in output paths, e.g. ``addition_p97_frac0.4_seed0``."""
        return f"{self.task}_p{self.prime}_frac{self.train_frac:g}_seed{self.seed}"

    def pairs(self) -> Tensor:
        """Every (a, b) of the task in row-major order, [N, 2]; the divisions leave out b = 0."""
        p = self.prime
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        grid = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)
        return grid[grid[:, 1] != 0] if self.task in DIVISIONS else grid

    def answers(self, pairs: Tensor) -> Tensor:
        return _answers(self.task, pairs[:, 0], pairs[:, 1], self.prime)

    def sequences(self, pairs: Tensor) -> Tensor:
        """Token ids ``a b =``, [N, 3]."""
        eq = torch.full((pairs.shape[0], 1), self.eq_token, dtype=torch.long)
        return torch.cat([pairs.long(), eq], dim=1)

    def split(self) -> tuple[Tensor, Tensor]:
        """(train indices, test indices) into ``pairs()``: a seeded permutation cut at train_frac; with
        train_frac 1 both are every pair (the seed's train = test)."""
        n = self.pairs().shape[0]
        if self.train_frac == 1:
            return torch.arange(n), torch.arange(n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_train = max(1, min(n - 1, round(self.train_frac * n)))
        return order[:n_train].sort().values, order[n_train:].sort().values

    def datasets(self) -> dict[str, tuple[Tensor, Tensor]]:
        """{"train": (input_ids [N, 3], labels [N]), "test": (...), "all": (...)}."""
        pairs = self.pairs()
        ids, labels = self.sequences(pairs), self.answers(pairs)
        train, test = self.split()
        return {"train": (ids[train], labels[train]), "test": (ids[test], labels[test]), "all": (ids, labels)}
