"""`eval/benchmarks/run_benchmarks.py`'s flags (SPEC §4.3). Field docstrings are the `--help` text.

`--model_variant` is `peft` (the model with its LoRA adapter, unmerged) or `base`; the original's spelling
`--model_type peft|base` still sets it (by value: any other `--model_type` is the model, as in every
script). The model itself is chosen by `--model`/`--model_type` (`tiny`, `gemma`, `llama`, a hub id or a
local folder) or by the original's `--model_size 2|9` (Gemma-2-2B / -9B with their Gemma Scope SAEs).
`--sae` is the SAE source as in every script; `--splice_sae` splices it, and the original's bare `--sae`
(no value, or true/false) is that switch (docs/FLAGS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lorasae.core.cli import (
    MODEL_VARIANTS,
    CommonArgs,
    SaeArchitectureArgs,
    SwitchAlias,
    field,
    split_model_type,
)
from lorasae.store.adapter_choice import adapter_help
from lorasae.store.adapter_flags import AdapterChoiceArgs
from lorasae.store.saes import GEMMA_SCOPE_2B, GEMMA_SCOPE_9B

MODEL_TYPES = MODEL_VARIANTS  # base | peft (`--model_variant`)
DEFAULT_BOOTSTRAP_ITERS = 100_000

# The original's two settings: model, Gemma Scope SAE (sae-lens release/id), its layer, the adapter rank.
MODEL_SIZES: dict[int, dict[str, str | int]] = {
    2: {
        "model": "google/gemma-2-2b",
        "sae": GEMMA_SCOPE_2B,
        "layer": 12,
        "rank": 64,
    },
    9: {
        "model": "google/gemma-2-9b",
        "sae": GEMMA_SCOPE_9B,
        "layer": 20,
        "rank": 64,
    },
}

HUB_TASKS: tuple[str, ...] = ("mmlu", "hellaswag", "truthfulqa_mc1", "truthfulqa_mc2")


@dataclass
class BenchmarkConfig(AdapterChoiceArgs, SaeArchitectureArgs, CommonArgs):
    """Run lm-eval-harness benchmarks on the base or LoRA model, with or without the SAE spliced in."""

    SWITCH_ALIASES: ClassVar[tuple[SwitchAlias, ...]] = (SwitchAlias("--sae", "--splice_sae"),)
    """The original's `--sae` switch: a bare `--sae` (or `--sae true|false`) is `--splice_sae`."""

    model_variant: str = "base"
    """'peft' (the model with its saved LoRA adapter, loaded unmerged) or 'base'. The original's
    `--model_type peft|base` (and `--MODEL_TYPE`) still sets it: by value, base or peft is this flag and any
    other value is the model."""

    model_type: str | None = field(default=None, alias=["--MODEL_TYPE"])
    """Registered model (gemma, llama, tiny), as in every script (same as --model); base or peft here is
    --model_variant (the original's spelling). Default: the Gemma-2 model of --model_size."""

    model: str | None = None
    """The model: tiny (built-in), gemma, llama, any Hugging Face causal LM id or a local folder.
    Default: the Gemma-2 model of --model_size."""

    dataset: str | None = None
    """Not used here: the benchmarks bring their own data (the built-in tasks come from the built-in corpus)."""

    model_size: int | None = None
    """The original's setting: 2 → google/gemma-2-2b with Gemma Scope gemma-scope-2b-pt-res
    layer_12/width_16k/average_l0_82; 9 → google/gemma-2-9b with gemma-scope-9b-pt-res
    layer_20/width_131k/average_l0_62. Ignored when --model or --model_type is given; 2 when none is given."""

    dtype: str | None = None
    """Model dtype. Default: bfloat16 for the Gemma Scope settings (as the original), float32 otherwise."""

    splice_sae: bool = False
    """Splice the SAE into the residual stream (the layer output is replaced by its reconstruction); the
    original's `--sae` switch (given with no value, or true/false)."""

    all_four: bool = False
    """Run the four combinations (base/peft × no SAE/SAE) one after the other, then print the table."""

    tasks: str | None = None
    """Comma-separated lm-eval task, group or tag names. Default: mmlu, hellaswag, truthfulqa_mc1,
    truthfulqa_mc2 for hub models; the built-in tasks (tiny_facts, tiny_domains, tiny_truthful_mc1,
    tiny_truthful_mc2) for --model tiny (or any model folder of the built-in world)."""

    limit: float | None = None
    """At most this many documents per task (a fraction < 1 means that share of each task): quick runs only."""

    batch_size: str | None = field(default=None, alias=["--eval_batch_size"])
    """Batch size for the log-likelihood requests: an integer or 'auto' (--eval_batch_size; --batch_size,
    lm-eval's name, kept as an alias). Default: 1 for the Gemma Scope
    settings (as the original), 16 otherwise."""

    num_fewshot: int | None = None
    """Few-shot examples per prompt. Default: each task's own default (the benchmarks' standard settings)."""

    sae_source: str | None = field(default=None, alias=["--sae"])
    """SAE (also --sae, as in every script): a folder (this project's, SAELens or sparsify format) or a
    sae-lens 'release/sae_id'; spliced with --splice_sae. A bare --sae (the original's switch) is
    --splice_sae. Default: Gemma Scope for --model_size; with
    --adapter, the SAE it was trained for; otherwise the SAE train_sae.py writes with default flags (the
    store's `find_sae`, as SAE-Bench and steering)."""

    sae_layer: int | None = field(default=None, alias=["--layer"])
    """Decoder layer to splice the SAE after (also --layer, as in every script). Default: the SAE's own
    hook layer."""

    adapter: str | None = field(
        default=None,
        help=adapter_help(
            "LoRA adapter folder (PEFT format) for --model_variant peft. Default: the default adapter (of "
            "--lora_rank and --lora_span when given; for --model_size, among the rank-64 ones on layers "
            "L+1…n-1, as the original)."
        ),
    )

    max_length: int | None = None
    """Maximum context length in tokens (default: the model's)."""

    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS
    """Bootstrap iterations for the standard errors of metrics that need them (mean metrics use the
    closed form)."""

    log_samples: bool = False
    """Also write the per-document requests and log-likelihoods next to each results file."""

    overwrite: bool = False
    """Redo a combination whose results file exists with a run record of the same run (the same model, SAE
    and adapter and their weights, tasks and settings); by default such an identical rerun is skipped,
    saying so."""

    def __post_init__(self) -> None:
        self.model_type, self.model_variant = split_model_type(
            self.model_type, self.model_variant, None, "base"
        )

    @property
    def model_name(self) -> str:
        if self.model or self.model_type:
            return self.model or str(self.model_type)
        return str(MODEL_SIZES[self.model_size or 2]["model"])

    @property
    def model_dtype(self) -> str:
        if self.dtype:
            return self.dtype
        return "bfloat16" if self.gemma_scope is not None else "float32"

    def validate(self) -> BenchmarkConfig:
        if self.model_variant not in MODEL_TYPES:
            raise ValueError(
                f"--model_variant is 'peft' or 'base' (got {self.model_variant!r}); choose the model with "
                "--model tiny|gemma|llama|<hub id or folder> or --model_size 2|9."
            )
        if self.model_size is not None and self.model_size not in MODEL_SIZES:
            raise ValueError(f"--model_size must be one of {sorted(MODEL_SIZES)}, got {self.model_size}.")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"--limit must be positive, got {self.limit}.")
        batch = self.batch_size
        if batch is not None and batch != "auto" and not (batch.isdigit() and int(batch) > 0):
            raise ValueError(f"--batch_size must be a positive integer or 'auto', got {self.batch_size!r}.")
        return self

    @property
    def batch(self) -> int | str:
        if self.batch_size is None:
            return 1 if self.gemma_scope is not None else 16
        return self.batch_size if self.batch_size == "auto" else int(self.batch_size)

    @property
    def task_list(self) -> list[str] | None:
        if not self.tasks:
            return None
        return [name.strip() for name in self.tasks.split(",") if name.strip()]

    @property
    def gemma_scope(self) -> dict[str, str | int] | None:
        """The original's Gemma Scope setting when the model comes from --model_size (no --model or
        --model_type)."""
        if self.model is None and self.model_type is None:
            return MODEL_SIZES[self.model_size or 2]
        return None

    @property
    def limit_value(self) -> int | float | None:
        if self.limit is None:
            return None
        return int(self.limit) if self.limit >= 1 else float(self.limit)
