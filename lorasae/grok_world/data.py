"""`train_sae.py --dataset grok:<task>`: the grokking problems as a token source with `TokenSplit`'s
interface (`val`, `train_chunks`, `train_batches`), so SAEs and crosscoders train on the grok model through
the same trainer as on text.

Each chunk is one problem `a b = c` (4 tokens, the grok model's whole context), and only the task's TRAIN
problems are used (the test problems stay unseen, as for the model; with `--train_frac 1`, the seed's
setting, train and test are every problem): validation = the first
`num_val_tokens / 4` of them in a seeded order, training = the rest, reshuffled (seeded) every epoch. The
answer is read at position 2 (the `=` token, the one predicting c), so the SAE configs take that position
only (`--positions -2`, `lorasae/train/positions.py`); the causal model's residual there does not see c.

The source names the task like the run folders do (`ModularTask.name`): `grok:addition_p97_frac0.4_seed0`;
parts left out take `ModularTask`'s defaults (`grok:addition` = p 97, train fraction 0.4, seed 0). It must
be the task the model was trained on, or "train problems" means another split.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from lorasae.core.errors import PreflightError
from lorasae.grok_world.tasks import ModularTask

GROK_PREFIX = "grok:"
PROBLEM_TOKENS = 4  # a b = c
_NAME = re.compile(
    r"^(?P<task>[a-z]+)(?:_p(?P<prime>\d+))?(?:_frac(?P<frac>[0-9.]+))?(?:_seed(?P<seed>\d+))?$"
)


def is_grok_source(source: str | None) -> bool:
    return source is not None and source.startswith(GROK_PREFIX)


def grok_source(task: ModularTask) -> str:
    """The `--dataset` value of `task` (`grok:<task.name>`)."""
    return GROK_PREFIX + task.name


def parse_grok_source(source: str) -> ModularTask:
    """The task a `grok:...` source names (its errors say what is wrong)."""
    m = _NAME.match(source.removeprefix(GROK_PREFIX))
    if not is_grok_source(source) or not m:
        raise ValueError(
            f"--dataset {source!r}: a grok source reads grok:<task>[_p<prime>][_frac<f>][_seed<s>], "
            "e.g. grok:addition_p97_frac0.4_seed0"
        )
    base = ModularTask()
    return ModularTask(
        task=m["task"],
        prime=int(m["prime"]) if m["prime"] else base.prime,
        train_frac=float(m["frac"]) if m["frac"] else base.train_frac,
        seed=int(m["seed"]) if m["seed"] else base.seed,
    )


def train_problems(task: ModularTask) -> torch.Tensor:
    """The task's train problems as `a b = c` token rows [N, 4], in `ModularTask.split`'s order."""
    ids, labels = task.datasets()["train"]
    return torch.cat([ids, labels[:, None]], dim=1)


@dataclass
class GrokSplit:
    """Validation and training problems of one task (the `TokenSplit` interface the trainer reads)."""

    source: str
    ctx_len: int
    seed: int
    val: torch.Tensor  # [n_val, 4]
    train: torch.Tensor  # [n_train, 4], in split order; `train_chunks` shuffles per epoch

    @property
    def num_val_chunks(self) -> int:
        return len(self.val)

    def _epoch(self, epoch: int) -> torch.Tensor:
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(self.seed + epoch))
        return self.train[order]

    def train_chunks(self, skip: int = 0) -> Iterator[torch.Tensor]:
        """Training problems from position `skip` on, epoch after epoch (each a seeded permutation)."""
        epoch, skip = divmod(skip, len(self.train))
        while True:
            yield from self._epoch(epoch)[skip:]
            epoch, skip = epoch + 1, 0

    def train_batches(self, batch_size: int, skip_chunks: int = 0) -> Iterator[torch.Tensor]:
        chunks = self.train_chunks(skip_chunks)
        while True:
            yield torch.stack([next(chunks) for _ in range(batch_size)])


def grok_token_split(source: str, ctx_len: int, num_val_tokens: int, seed: int) -> GrokSplit:
    """The split of a `grok:` source: same arguments → same validation and training problems."""
    task = parse_grok_source(source)
    if ctx_len != PROBLEM_TOKENS:
        raise PreflightError(
            f"--dataset {source}: every problem is {PROBLEM_TOKENS} tokens (a b = c); pass --ctx_len "
            f"{PROBLEM_TOKENS} (the default for the grok model), not {ctx_len}."
        )
    problems = train_problems(task)
    order = torch.randperm(len(problems), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, -(-num_val_tokens // PROBLEM_TOKENS))
    if n_val >= len(problems):
        raise PreflightError(
            f"--dataset {source} has {len(problems)} train problems ({len(problems) * PROBLEM_TOKENS} "
            f"tokens); --num_val_tokens {num_val_tokens} would take {n_val} of them for validation. Pass "
            f"--num_val_tokens {PROBLEM_TOKENS * max(1, len(problems) // 8)} (an eighth) or less."
        )
    shuffled = problems[order]
    return GrokSplit(source, ctx_len, seed, shuffled[:n_val], shuffled[n_val:])
