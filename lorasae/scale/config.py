"""The scale study's flags (`eval/scale_study/run.py`) and its plan: which LoRA runs ("points") each of
the three questions needs. A point is (model, rank, training sequences, seed); a point that two questions
share is measured once."""

from __future__ import annotations

from dataclasses import dataclass, field

from lorasae.core.budget import DEMO_SAE_TOKENS

PAPER_RANK_RATIO = 64 / 2304
"""The paper's LoRA rank over the model width: rank 64 on Gemma-2-2B's d_model 2304 (2.8 %)."""

QUESTIONS = ("rank", "examples", "size")


@dataclass
class ScaleStudyConfig:
    """The paper's claims at more than one scale on the built-in models: gap closed, benchmark accuracy
    with and without the SAE, and the steering effect as functions of the LoRA rank / d_model, the LoRA
    training sequences and the model size; and the e2e speed-up's per-token cost ratio against the FLOPs
    of the layers after vs before the SAE."""

    models: list[str] = field(default_factory=lambda: ["tiny-s", "tiny"])
    """Model sizes, smallest first (registry keys of lorasae/world/sizes.py, or folders of built-in
    worlds); the last is the main model of the rank and examples questions."""

    layer: int = 1
    """Decoder layer of each model's SAE (the demo's)."""

    rank_ratios: list[float] = field(default_factory=lambda: [PAPER_RANK_RATIO, 0.0625, 0.125, 0.25])
    """LoRA rank / d_model of the rank question (rank = max(1, round(ratio · d_model)))."""

    examples: list[int] = field(default_factory=lambda: [40, 160, 640, 2560])
    """LoRA training sequences of the examples question."""

    base_ratio: float = 0.125
    """Rank / d_model held fixed by the examples and size questions (the demo's rank 16 on d 128)."""

    size_ratios: list[float] = field(default_factory=lambda: [PAPER_RANK_RATIO, 0.125])
    """Rank / d_model of the size question (each model at each ratio)."""

    base_examples: int = 160
    """Training sequences held fixed by the rank and size questions (the demo's)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Seeds of each point (LoRA init and data order); error bars are their standard error, and each
    run's own CE standard error where there is one seed."""

    lora_layers: str = "all"
    """Layers that get adapters (train_lora.py's --LoRA_layers)."""

    sae_tokens: int = DEMO_SAE_TOKENS
    """Training tokens of each model's TopK SAE when it has none yet (the demo's budget)."""

    benchmark_limit: int | None = 100
    """Documents per built-in benchmark task (None: all)."""

    benchmark_tasks: list[str] | None = None
    """Built-in benchmark tasks (default: all four, tiny_facts, tiny_domains, tiny_truthful_mc1/mc2)."""

    steering_alpha: float = 2.0
    """Multiplicative steering strength (fixed for every point, not tuned per point)."""

    steering_negatives: int = 50
    """Examples per negative set of the steering effect."""

    steering_positives: int = 60
    """Concept documents steered towards (the science domain the latent is chosen for)."""

    speed_layers: list[int] | None = None
    """SAE layers of the speed-up question (default: every layer of each model)."""

    speed_steps: int = 12
    """Timed training steps per objective and layer (after 2 warm-up steps)."""

    device: str = "cpu"
    seed_offset: int = 0
    """Added to every seed (a separate replicate of the whole study)."""

    quick: bool = False
    """A test-sized study: one seed, two values per axis, small evaluations (seconds to minutes)."""

    figures: bool = True
    """Draw the figures and write the table at the end."""

    def apply_quick(self) -> ScaleStudyConfig:
        """The `--quick` sizes (used by the tests)."""
        if self.quick:
            self.rank_ratios = self.rank_ratios[:1] + self.rank_ratios[-1:]
            self.examples = [4, 8]
            self.size_ratios = [self.base_ratio]
            self.base_examples = 4
            self.seeds = self.seeds[:1]
            self.sae_tokens = min(self.sae_tokens, 12_000)
            self.benchmark_limit = 4
            self.benchmark_tasks = ["tiny_truthful_mc1"]
            self.steering_negatives = 6
            self.steering_positives = 6
            self.speed_steps = 2
        return self


@dataclass(frozen=True)
class Point:
    """One LoRA run of the study and every measurement made on it."""

    model: str
    rank: int
    examples: int
    seed: int

    @property
    def key(self) -> str:
        from lorasae.core.paths import sanitize

        return f"{sanitize(self.model.rstrip('/').split('/')[-1])}_r{self.rank}_n{self.examples}_s{self.seed}"


def rank_for(ratio: float, d_model: int) -> int:
    """The LoRA rank at `ratio` of the width: max(1, round(ratio · d_model))."""
    return max(1, round(ratio * d_model))


def plan_points(cfg: ScaleStudyConfig, d_models: dict[str, int]) -> dict[str, list[Point]]:
    """The points of each question (`rank`, `examples`, `size`); `d_models` gives each model's width."""
    main = cfg.models[-1]
    seeds = [s + cfg.seed_offset for s in cfg.seeds]
    base_rank = {m: rank_for(cfg.base_ratio, d_models[m]) for m in cfg.models}
    ranks = sorted({rank_for(r, d_models[main]) for r in cfg.rank_ratios})
    plan = {
        "rank": [Point(main, r, cfg.base_examples, s) for r in ranks for s in seeds],
        "examples": [Point(main, base_rank[main], n, s) for n in cfg.examples for s in seeds],
        "size": [
            Point(m, rank_for(ratio, d_models[m]), cfg.base_examples, s)
            for m in cfg.models
            for ratio in sorted(set(cfg.size_ratios))
            for s in seeds
        ],
    }
    return plan


def unique_points(plan: dict[str, list[Point]]) -> list[Point]:
    """Every point once, in plan order."""
    return list(dict.fromkeys(p for points in plan.values() for p in points))
