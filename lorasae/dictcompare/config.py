"""`eval/dictionaries/run.py`'s settings (`DictionariesConfig`); field docstrings are `--help`."""

from __future__ import annotations

from dataclasses import dataclass

from lorasae.core.budget import DEMO_SAE_TOKENS
from lorasae.core.cli import field, parse_count

ARCHITECTURES = ("topk", "batchtopk", "matryoshka", "jumprelu", "transcoder", "skip_transcoder")
"""The rows of the comparison, in order (the transcoders use a TopK activation: the same k, the same L0)."""


@dataclass
class DictionariesConfig:
    """Compare dictionaries at matched L0: spliced CE, LoRA, KL fine-tuning and both, per architecture."""

    device: str = "cpu"
    """Device for every run."""

    model_type: str = "tiny"
    """Registered model (the built-in one by default)."""

    model: str | None = None
    """Any Hugging Face causal LM id or local folder; overrides --model_type."""

    dataset: str | None = None
    """Training/validation text (as train_sae.py's --dataset). Default: builtin for the tiny model."""

    layer: int = 1
    """Decoder layer every dictionary reads (a transcoder: that layer's MLP)."""

    k: int | None = None
    """Latents per token of the TopK-style dictionaries (the matched L0). Default: the model's default k."""

    expansion_factor: int = 8
    """Width of every dictionary, × d_model."""

    architectures: list[str] = field(default_factory=lambda: list(ARCHITECTURES))
    """Rows: any of topk, batchtopk, matryoshka, jumprelu, transcoder, skip_transcoder."""

    sae_tokens: int = field(default=DEMO_SAE_TOKENS, type=parse_count)
    """Training tokens of each dictionary (the demo's main SAE's budget: its run is reused when it matches)."""

    kl_tokens_pct: float | None = None
    """KL fine-tuning budget, in percent of --sae_tokens. Default: train_sae.py's --objective kl budget
    (32,768 tokens on the built-in models, about 16 percent of the demo's 200k; Karvonen's 25M at d ≥ 1024), whose
    folders keep the plain `<dictionary>__kl-ft` name; another budget is named in the folder (`__n-<tokens>`)."""

    kl_mse_weight: float = 1.0
    """Weight of the FVU term beside the KL in the fine-tune (Karvonen's KL+MSE mix)."""

    jumprelu_init_threshold: float = 10.5
    """JumpReLU's initial threshold θ: the rule that brings its L0 near k (see docs/DEVIATIONS.md; calibrated
    on the built-in model at layer 1 and the demo's 200k tokens, L0 4.6; another model or layer needs its own
    θ₀); the table reports the L0 it reaches."""

    l0_coefficient: float = 0.01
    """JumpReLU's L0 penalty λ (with a 50-step warm-up)."""

    rank: int = 16
    """LoRA rank (every layer)."""

    lora_examples: int = field(default=160, type=parse_count)
    """Training sequences of each LoRA run."""

    kl_checkpoints: list[int] = field(default_factory=list)
    """Also KL fine-tune these checkpoints (percent) of the TopK SAE at the same budget, for the timing
    figure's "TopK + KL fine-tune" (the demo: 20 50 80 100). Empty: none."""

    shards: int | None = None
    """Independent runs go in this many processes at once (`python -m lorasae.dictcompare.shards`, one
    thread each: a small model's step uses one core); 1 runs them in this process. Default: on the CPU one
    per available core, on a GPU 1."""

    seed: int = 42
    """Random seed."""

    overwrite: bool = field(default=False, alias=["--force"])
    """Redo every run and the table even when done, replacing them (as every eval's --overwrite; --force is
    the earlier spelling)."""

    def problems(self) -> list[str]:
        out = [f"--architectures: {a!r} is not one of {', '.join(ARCHITECTURES)}" for a in self.architectures
               if a not in ARCHITECTURES]  # fmt: skip
        if self.shards is not None and self.shards < 1:
            out.append(f"--shards must be ≥ 1, got {self.shards}")
        if self.sae_tokens < 1 or self.lora_examples < 1 or self.rank < 1:
            out.append("--sae_tokens, --lora_examples and --rank must be ≥ 1")
        if self.kl_tokens_pct is not None and not 0 < self.kl_tokens_pct <= 100:
            out.append(f"--kl_tokens_pct must be in (0, 100], got {self.kl_tokens_pct}")
        if any(not 1 <= c <= 100 for c in self.kl_checkpoints):
            out.append("--kl_checkpoints are percentages in 1 … 100")
        return out

    @property
    def model_name(self) -> str:
        return self.model or self.model_type

    @property
    def kl_tokens(self) -> int | None:
        """The KL fine-tune's tokens (--kl_tokens_pct of --sae_tokens); None: train_sae.py's default."""
        if self.kl_tokens_pct is None:
            return None
        return max(1, round(self.sae_tokens * self.kl_tokens_pct / 100))


NOT_IDENTITY = frozenset({"device", "overwrite", "model", "model_type", "shards"})
"""Settings that never change the comparison's numbers (left out of its identity and path)."""
