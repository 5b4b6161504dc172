"""`eval/benchmarks/run_benchmarks.py`'s flags (SPEC §4.3). Field docstrings are the `--help` text.

As in the original, `--model_type` means `peft` (the model with its LoRA adapter, unmerged) or `base`;
the model itself is chosen by `--model` (`tiny`, `gemma`, `llama`, a hub id or a local folder) or by the
original's `--model_size 2|9` (Gemma-2-2B / -9B with their Gemma Scope SAEs).
"""

from __future__ import annotations

from dataclasses import dataclass

from lorasae.cli import CommonArgs, field
from lorasae.store.adapter_choice import adapter_help
from lorasae.store.saes import GEMMA_SCOPE_2B, GEMMA_SCOPE_9B

MODEL_TYPES = ("peft", "base")

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
class BenchmarkConfig(CommonArgs):
    """Run lm-eval-harness benchmarks on the base or LoRA model, with or without the SAE spliced in."""

    model_type: str = field(default="base", alias=["--MODEL_TYPE"])
    """'peft' (the model with its saved LoRA adapter, loaded unmerged) or 'base'."""

    model: str | None = None
    """The model: tiny (built-in), gemma, llama, any Hugging Face causal LM id or a local folder.
    Default: the Gemma-2 model of --model_size."""

    dataset: str | None = None
    """Not used here: the benchmarks bring their own data (the built-in tasks come from the built-in corpus)."""

    model_size: int | None = None
    """The original's setting: 2 → google/gemma-2-2b with Gemma Scope gemma-scope-2b-pt-res
    layer_12/width_16k/average_l0_82; 9 → google/gemma-2-9b with gemma-scope-9b-pt-res
    layer_20/width_131k/average_l0_62. Ignored when --model is given; 2 when neither is given."""

    dtype: str | None = None
    """Model dtype. Default: bfloat16 for the Gemma Scope settings (as the original), float32 otherwise."""

    sae: bool = False
    """Splice the SAE into the residual stream (the layer output is replaced by its reconstruction)."""

    all_four: bool = False
    """Run the four combinations (base/peft × no SAE/SAE) one after the other, then print the table."""

    tasks: str | None = None
    """Comma-separated lm-eval task, group or tag names. Default: mmlu, hellaswag, truthfulqa_mc1,
    truthfulqa_mc2 for hub models; the built-in tasks (tiny_facts, tiny_domains, tiny_truthful_mc1,
    tiny_truthful_mc2) for --model tiny (or any model folder of the built-in world)."""

    limit: float | None = None
    """At most this many documents per task (a fraction < 1 means that share of each task): quick runs only."""

    batch_size: str | None = None
    """Batch size for the log-likelihood requests: an integer or 'auto'. Default: 1 for the Gemma Scope
    settings (as the original), 16 otherwise."""

    num_fewshot: int | None = None
    """Few-shot examples per prompt. Default: each task's own default (the benchmarks' standard settings)."""

    sae_source: str | None = None
    """SAE to splice: a folder (this project's, SAELens or sparsify format) or a sae-lens 'release/sae_id'.
    (--sae itself means "splice an SAE", as in the original.) Default: Gemma Scope for --model_size; with
    --adapter, the SAE it was trained for; otherwise the SAE train_sae.py writes with default flags (the
    store's `find_sae`, as SAE-Bench and steering)."""

    sae_layer: int | None = None
    """Decoder layer to splice the SAE after. Default: the SAE's own hook layer."""

    adapter: str | None = field(
        default=None,
        help=adapter_help(
            "LoRA adapter folder (PEFT format) for --model_type peft. Default: the default adapter (among "
            "the rank-64 ones on layers L+1…n-1 for --model_size, as the original)."
        ),
    )

    rank: int | None = None
    """Only consider saved adapters of this LoRA rank when looking one up."""

    max_length: int | None = None
    """Maximum context length in tokens (default: the model's)."""

    bootstrap_iters: int = 100_000
    """Bootstrap iterations for the standard errors of metrics that need them (mean metrics use the
    closed form)."""

    log_samples: bool = False
    """Also write the per-document requests and log-likelihoods next to each results file."""

    @property
    def model_name(self) -> str:
        if self.model:
            return self.model
        return str(MODEL_SIZES[self.model_size or 2]["model"])

    @property
    def model_dtype(self) -> str:
        if self.dtype:
            return self.dtype
        return "bfloat16" if self.gemma_scope is not None else "float32"

    def validate(self) -> BenchmarkConfig:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(
                f"--model_type is 'peft' or 'base' here (got {self.model_type!r}); choose the model with "
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
        """The original's Gemma Scope setting when the model comes from --model_size (no --model)."""
        if self.model is None:
            return MODEL_SIZES[self.model_size or 2]
        return None

    @property
    def limit_value(self) -> int | float | None:
        if self.limit is None:
            return None
        return int(self.limit) if self.limit >= 1 else float(self.limit)
