"""Which latents a dashboard shows (`--latents`), and how much the adapter changed each one.

The change score of latent i is |log2((n_LoRA(i) + 1) / (n_base(i) + 1))|, where n(i) is the number of
tokens on which the latent fires in that model (add-one smoothed, so a latent that starts or stops firing
scores by how often it fires in the other model); ties are broken by the change in its mean activation
where it fires, |μ_LoRA(i) − μ_base(i)|. `changed:N` shows the N latents with the highest scores;
`frequent:N` the N latents that fire on the most tokens of the base model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from lorasae.dashboard.collect import LatentStats

MODE = re.compile(r"^(changed|frequent):(\d+)$")


def change_scores(base: LatentStats, lora: LatentStats) -> np.ndarray:
    """[n_latents] |log2((n_LoRA + 1) / (n_base + 1))| of the firing counts (equal token counts assumed)."""
    return np.abs(np.log2((lora.counts + 1.0) / (base.counts + 1.0)))


def most_changed(base: LatentStats, lora: LatentStats, n: int) -> list[int]:
    """The `n` latents with the highest change score (ties: the larger change of the mean activation where
    the latent fires; then the lower index)."""
    score = change_scores(base, lora)
    mean_change = np.abs(lora.mean_active - base.mean_active)
    order = np.lexsort((np.arange(len(score)), -mean_change, -score))
    return [int(i) for i in order[:n]]


def top_overlap(base: LatentStats, lora: LatentStats, latent: int) -> float | None:
    """Jaccard overlap |A ∩ B| / |A ∪ B| of the latent's top sequences in the two models (None when it
    fires in neither)."""
    a, b = base.top_set(latent), lora.top_set(latent)
    return len(a & b) / len(a | b) if a | b else None


@dataclass(frozen=True)
class LatentChoice:
    """What `--latents` asked for: explicit ids, the N most changed, the N most frequent (or several)."""

    ids: tuple[int, ...] = ()
    changed: int = 0
    frequent: int = 0

    def resolve(self, n_latents: int, base: LatentStats, lora: LatentStats | None) -> dict[int, str]:
        """`{latent: why it is shown}` in order: the listed ids, then the most changed, then the most
        frequent (each skipping latents already shown)."""
        for i in self.ids:
            if not 0 <= i < n_latents:
                raise ValueError(f"--latents: latent {i} is out of range; the SAE has {n_latents} latents.")
        chosen = {i: "listed" for i in self.ids}
        if self.changed:
            if lora is None:
                raise ValueError(
                    "--latents changed:N needs an adapter (--adapter, or one saved for the SAE)."
                )
            ranked = [i for i in most_changed(base, lora, self.changed + len(chosen)) if i not in chosen]
            chosen |= {i: f"changed #{rank + 1}" for rank, i in enumerate(ranked[: self.changed])}
        if self.frequent:
            order = [int(i) for i in np.lexsort((np.arange(n_latents), -base.counts)) if int(i) not in chosen]
            chosen |= {i: f"frequent #{rank + 1}" for rank, i in enumerate(order[: self.frequent])}
        return chosen


def parse_latents(spec: str) -> LatentChoice:
    """`'3,17'` (ids), `'changed:10'`, `'frequent:10'`, or a mix (`'3,changed:10'`)."""
    ids: list[int] = []
    modes = {"changed": 0, "frequent": 0}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        match = MODE.match(part)
        if match:
            modes[match.group(1)] = int(match.group(2))
        elif part.isdigit():
            ids.append(int(part))
        else:
            raise ValueError(
                f"--latents: {part!r} is not a latent id, changed:N or frequent:N (e.g. '3,17,changed:10')."
            )
    if not ids and not any(modes.values()):
        raise ValueError("--latents names no latent: give ids ('3,17'), changed:N or frequent:N.")
    return LatentChoice(tuple(ids), **modes)


__all__ = ["LatentChoice", "change_scores", "most_changed", "parse_latents", "top_overlap"]
