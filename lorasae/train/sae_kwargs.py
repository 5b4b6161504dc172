"""`train_sae.py`'s architecture settings (`SaeKwargs`, reachable flat, `--sparsity`, or dotted,
`--sae_kwargs.sparsity`), one field per architecture option, each checked by `problems()`; a part of
`lorasae/train/options.py`'s `ArchitectureOptions`. Field docstrings are `--help`."""

# no `from __future__ import annotations`: see lorasae/train/options.py (simple-parsing resolves nested
# dataclass annotations in another module's namespace).

from dataclasses import dataclass
from typing import Any

from lorasae.core.cli import field

CROSSCODER_ACTIVATIONS = ("topk", "relu")
JUMPRELU_SPARSITY_LOSSES = ("step", "tanh")
TRANSCODER_ACTIVATIONS = ("relu", "topk")
RECON_LOSSES = ("fvu", "sum_sq")


def at_least(problems: list[str], flag: str, value: Any, low: float, strict: bool = False) -> None:
    """Append `--flag must be ≥ low` (or `> low`) when a given value is below it."""
    if value is not None and (value <= low if strict else value < low):
        problems.append(f"--{flag} must be {'>' if strict else '≥'} {low}, got {value}")


@dataclass
class SaeKwargs:
    """Architecture settings, also reachable as dotted flags (`--sae_kwargs.sparsity 5`, the seed's
    spelling) besides their flat ones (`--sparsity 5`)."""

    sparsity: float = 1e-3
    """L1 coefficient λ of --architecture relu (and a relu crosscoder): loss = FVU (see --recon_loss) + λ · mean
    over tokens of Σ_i z_i ‖W_dec_i‖ (the L1 weighted by decoder norms, as SAELens's standard SAE)."""

    recon_loss: str = "fvu"
    """Reconstruction term of --architecture relu: fvu | sum_sq (Σ_d (x̂−x)² per token, mean over tokens: the
    term of SAELens's standard SAE and train-SAE's VanillaSAE, so their λ means the same; objectives.py)."""

    sparsity_warmup_steps: int = 0
    """Steps over which λ rises linearly from λ/N to λ (0 = the full λ from the first step)."""

    topk: int | None = None
    """The seed's name for --k: when given, it sets --k."""

    crosscoder_activation: str = "topk"
    """--architecture crosscoder: topk (TopK over the summed pre-activations, k = --k) or relu (ReLU + L1
    weighted by the summed decoder norms, λ = --sparsity)."""

    threshold_lr: float = 0.01
    """--architecture batchtopk | matryoshka: rate of the inference threshold's moving average (SAELens's
    `topk_threshold_lr`)."""

    matryoshka_widths: list[int] = field(default_factory=list)
    """--architecture matryoshka: the nested prefix sizes, increasing (e.g. --matryoshka_widths 32 128);
    the full width is appended. Default: d_sae/16, d_sae/4 (and d_sae)."""

    jumprelu_bandwidth: float = 0.001
    """--architecture jumprelu: ε, the kernel bandwidth of the straight-through estimator (the paper's)."""

    jumprelu_init_threshold: float = 0.001
    """--architecture jumprelu: θ at initialisation (the paper's)."""

    jumprelu_sparsity_loss: str = "step"
    """--architecture jumprelu: step (L0, the paper's) or tanh (Anthropic's)."""

    l0_coefficient: float = 1e-3
    """--architecture jumprelu: λ of the L0 (or tanh) penalty, added to the FVU (so λ is in FVU units:
    λ_fvu ≈ λ_mse / Σ_d Var(x_d) for a λ taken from an MSE objective)."""

    l0_warmup_steps: int = 0
    """--architecture jumprelu: λ rises linearly from 0 to --l0_coefficient over these steps (SAELens's)."""

    transcoder_activation: str = "relu"
    """--architecture transcoder | skip_transcoder: relu (Dunefsky et al.; + decoder-norm-weighted L1, λ =
    --sparsity; SAELens loads it) or topk (Paulo et al., sparsify's; k = --k)."""

    def problems(self) -> list[str]:
        out: list[str] = []
        at_least(out, "sparsity", self.sparsity, 0)
        at_least(out, "sparsity_warmup_steps", self.sparsity_warmup_steps, 0)
        if self.crosscoder_activation not in CROSSCODER_ACTIVATIONS:
            out.append(f"--crosscoder_activation must be topk or relu, got {self.crosscoder_activation!r}")
        at_least(out, "threshold_lr", self.threshold_lr, 0, strict=True)
        if self.threshold_lr > 1:
            out.append(f"--threshold_lr must be ≤ 1, got {self.threshold_lr}")
        widths = list(self.matryoshka_widths)
        if widths and (widths[0] < 1 or any(b <= a for a, b in zip(widths, widths[1:], strict=False))):
            out.append(f"--matryoshka_widths must increase strictly from 1 or more, got {widths}")
        at_least(out, "jumprelu_bandwidth", self.jumprelu_bandwidth, 0, strict=True)
        at_least(out, "jumprelu_init_threshold", self.jumprelu_init_threshold, 0, strict=True)
        if self.jumprelu_sparsity_loss not in JUMPRELU_SPARSITY_LOSSES:
            out.append(f"--jumprelu_sparsity_loss must be step or tanh, got {self.jumprelu_sparsity_loss!r}")
        at_least(out, "l0_coefficient", self.l0_coefficient, 0)
        at_least(out, "l0_warmup_steps", self.l0_warmup_steps, 0)
        if self.transcoder_activation not in TRANSCODER_ACTIVATIONS:
            out.append(f"--transcoder_activation must be relu or topk, got {self.transcoder_activation!r}")
        if self.recon_loss not in RECON_LOSSES:
            out.append(f"--recon_loss must be one of {', '.join(RECON_LOSSES)}, got {self.recon_loss!r}")
        return out
