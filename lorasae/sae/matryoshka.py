"""The Matryoshka BatchTopK SAE (Bussmann, Nabeshima, Karvonen, Nanda, arXiv 2503.17547),
`--architecture matryoshka`.

A BatchTopK SAE (:mod:`lorasae.sae.batchtopk`) whose latents are ordered into nested prefixes of sizes
``widths`` (the last is d_sae): the prefix of width w must reconstruct x on its own, from the kept latents
with index < w. The reconstruction term is the sum over the prefixes of each prefix's FVU,
:func:`matryoshka_loss` (SAELens's ``MatryoshkaBatchTopKTrainingSAE`` sums the per-prefix squared
errors the same way, the full width included). The batch selection, threshold, AuxK (on the full
reconstruction's residual, SAELens's default ``use_matryoshka_aux_loss=False``) and inference are
BatchTopK's.

On disk: SAELens's inference format for it, ``architecture: "jumprelu"`` with
``metadata.training_architecture: "matryoshka_batchtopk"`` and the widths in
``training_architecture_details.matryoshka_widths``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from lorasae.sae.batchtopk import BatchTopKConfig, BatchTopKSAE
from lorasae.sae.coder import CoderOutput, ours_of, provenance, training_details
from lorasae.sae.kernels import sparse_decode

TRAINING_ARCHITECTURE = "matryoshka_batchtopk"


@dataclass
class MatryoshkaConfig(BatchTopKConfig):
    """BatchTopK's fields + the nested prefix sizes (strictly increasing; d_sae is appended if missing)."""

    widths: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        widths = [int(w) for w in self.widths]
        if not widths or widths[-1] != self.d_sae:
            widths.append(self.d_sae)
        if (
            widths[0] < 1
            or any(b <= a for a, b in zip(widths, widths[1:], strict=False))
            or widths[-1] > self.d_sae
        ):
            raise ValueError(
                f"MatryoshkaConfig: widths must increase strictly from >= 1 up to d_sae={self.d_sae}, got {self.widths}"
            )
        self.widths = widths


def matryoshka_loss(
    x: Tensor, acts: Tensor, idx: Tensor, W_dec: Tensor, b_dec: Tensor, widths: Sequence[int],
    total_variance: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """Σ over prefixes w of ‖x − (b_dec + Σ_{kept i < w} acts_i W_dec[i])‖² / total variance of x.
    x [N, d]; acts, idx [N, k'] (the kept latents, zero-padded); W_dec [m, d]."""
    den = (x - x.mean(0)).pow(2).sum() if total_variance is None else total_variance
    loss = x.new_zeros(())
    for w in widths:
        inner = sparse_decode(acts * (idx < w), idx, W_dec) + b_dec
        loss = loss + (x - inner).pow(2).sum() / den
    return loss


class MatryoshkaSAE(BatchTopKSAE):
    """Matryoshka BatchTopK SAE; ``forward``'s ``recon`` is the summed prefix FVUs."""

    cfg: MatryoshkaConfig
    OURS = "matryoshka"
    TRAINING = TRAINING_ARCHITECTURE

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> CoderOutput:
        out = super().forward(x, dead_mask)
        x = x.to(self.dtype).reshape(-1, self.cfg.d_in)
        total_var = (x - x.mean(0)).pow(2).sum()
        inner = self.cfg.widths[:-1]  # the full width's term is the FVU already computed
        recon = out.fvu + matryoshka_loss(
            x, out.top_acts, out.top_idx, self.W_dec, self.b_dec, inner, total_var
        )
        return out._replace(recon=recon)

    def _training_details(self) -> dict[str, Any]:
        return {
            **super()._training_details(),
            "matryoshka_widths": list(self.cfg.widths),
            "use_matryoshka_aux_loss": False,
        }

    def _extra_ours(self) -> dict[str, Any]:
        return {"widths": list(self.cfg.widths)}

    @classmethod
    def _config_from(cls, raw: dict[str, Any], k: int, threshold_lr: float) -> MatryoshkaConfig:
        widths = ours_of(raw).get("widths") or training_details(raw).get("matryoshka_widths") or []
        return MatryoshkaConfig(
            d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]), k=k, threshold_lr=threshold_lr, widths=list(widths),
            **provenance(raw),
        )  # fmt: skip


__all__ = ["MatryoshkaConfig", "MatryoshkaSAE", "matryoshka_loss"]
