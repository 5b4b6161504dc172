"""`eval/SAE-Bench/run_eval.py`'s flags (`SaeBenchArgs`), the eval and model-type names, and where results
and merged state dicts (peft dicts) are written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simple_parsing import field

from lorasae.core.cli import MODEL_VARIANTS, CommonArgs, SaeChoiceArgs, split_model_type
from lorasae.core.llm import API_KEY_ENV, DEFAULT_LLM_MODEL
from lorasae.core.paths import eval_dir, sanitize, settings_variant
from lorasae.model.load import model_key
from lorasae.saebench.suite import EVALS
from lorasae.store.adapter_choice import adapter_help

MODEL_TYPES: tuple[str, ...] = MODEL_VARIANTS  # base | peft (`--model_variant`)
HUB_CORE_DATASET = "Skylion007/openwebtext"  # SAEBench core's default
HUB_AUTOINTERP_DATASET = "monology/pile-uncopyrighted"  # SAEBench autointerp's default


@dataclass
class SaeBenchArgs(SaeChoiceArgs, CommonArgs):
    """Evaluate an SAE with SAEBench-style evals on the base model or on the LoRA-merged model."""

    model_variant: str = "peft"
    """Which model the SAE is evaluated on: peft (the model with the LoRA adapter merged in) or base. The
    original's `--model_type peft|base` (and `--MODEL_TYPE`) still sets it: by value, base or peft is this
    flag and any other value is the model (docs/FLAGS.md)."""

    model_type: str = field(default="gemma", alias=["--MODEL_TYPE"])
    """Registered model (gemma, llama, tiny), as in every script; base or peft here is --model_variant
    (the original's spelling)."""

    model: str | None = None
    """Model: gemma (google/gemma-2-2b, the original's), llama, tiny (built-in) or any Hugging Face causal LM
    id or local folder. Default: gemma."""

    dataset: str | None = None
    """Text for core and autointerp: 'builtin', a hub dataset or a local txt/jsonl/parquet file or folder.
    Default: builtin for the tiny model, else SAEBench's (openwebtext for core, the Pile for autointerp)."""

    adapter: str | None = field(
        default=None,
        help=adapter_help(
            "LoRA adapter folder (PEFT format) for --model_variant peft. Default: the default adapter."
        ),
    )

    peft_dict: str | None = None
    """Merged state dict written by get_peft_dict.py, loaded instead of merging the adapter in memory; refused
    unless its run record names this adapter (and its weights) and model. Default:
    eval/SAE-Bench/peft_dicts/<name of the adapter>.pt when its run record says so, else an in-memory merge."""

    evals: str = field(
        default="all",
        help=f"Comma-separated evals: {', '.join(EVALS)} (or all: SAEBench's eight).",
    )

    size: str = "auto"
    """Eval sizes: full (SAEBench's defaults), small (seconds to a minute each on a CPU), or auto (small for the
    built-in model or on a CPU, full otherwise)."""

    labelled_data: str = "auto"
    """Labelled text for probing, SCR and TPP: hub (SAEBench's bias-in-bios, Amazon reviews, ...), builtin
    (the built-in world's documents) or auto (builtin for the built-in model or dataset)."""

    llm_batch_size: int | None = None
    """Sequences per model forward pass (default: 32 full, 16 small)."""

    train_set_size: int | None = None
    """Probe training texts per dataset for sparse probing, SCR and TPP (SAEBench: 4000; small: 200)."""

    test_set_size: int | None = None
    """Probe test texts per dataset for sparse probing, SCR and TPP (SAEBench: 1000; small: 100)."""

    judge_model: str = DEFAULT_LLM_MODEL
    """Autointerp judge model (any OpenAI-compatible chat model)."""

    judge_base_url: str | None = None
    """Base URL of the OpenAI-compatible endpoint (default: OpenAI's; also $OPENAI_BASE_URL)."""

    api_key_env: str = API_KEY_ENV
    """Environment variable holding the judge's API key; autointerp is skipped when it is unset."""

    autointerp_latents: int | None = None
    """Latents explained and scored by autointerp (default: SAEBench's 1000 full, 20 small)."""

    scr_ablation_pooling: str = "saebench"
    """How SCR/TPP pool ablated residuals: saebench (SAEBench's: summed over all positions, padding and BOS
    included, over the unmasked count) or unmasked (padding and BOS left out of the sum)."""

    forget_corpus: str | None = None
    """Unlearning with hub data: a local copy of WMDP's bio forget corpus (jsonl/txt; gated by CAIS), used
    for the latents' forget-set sparsity. Without it hub unlearning is skipped."""

    output_dir: str | None = None
    """Results folder (default: eval/SAE-Bench/results/)."""

    plot: bool = True
    """Write the base-vs-peft figure to plots/ when both results exist."""

    overwrite: bool = False
    """Redo an eval whose result exists with a run record of the same run (the same SAE and adapter and
    their weights, model and settings); by default such an identical rerun is skipped, saying so."""

    def __post_init__(self) -> None:
        self.model_type, self.model_variant = split_model_type(
            self.model_type, self.model_variant, "gemma", "peft"
        )

    @property
    def model_name(self) -> str:
        return self.model or self.model_type


# settings that never enter a result's slot name: the SAE, the adapter and the model are the slot itself
# (`eval_identity.result_slot`); the others do not change a result's numbers
NOT_IN_NAME = frozenset(
    {
        "device",
        "wandb",
        "model_type",
        "model_variant",
        "model",
        "sae",
        "layer",
        "adapter",
        "peft_dict",
        "evals",
    }
    | {"output_dir", "plot", "api_key_env", "overwrite"}
)
SHORT_NAMES = {
    "size": "size", "labelled_data": "labels", "dataset": "data", "dtype": "dtype", "seed": "seed",
    "llm_batch_size": "bs", "train_set_size": "train", "test_set_size": "test", "autointerp_latents": "latents",
    "scr_ablation_pooling": "pool", "judge_model": "judge", "judge_base_url": "judgeurl", "forget_corpus": "forget",
}  # fmt: skip


def result_variant(args: SaeBenchArgs) -> str:
    """The settings of `args` off `run_eval.py`'s defaults, as its results' slot carries them
    (`lorasae.core.paths.settings_variant`; '' with the defaults: `<sae_tag>[__<adapter>]` as before); local
    paths (--dataset, --forget_corpus) as records name them (`evals.identity.portable_settings`), so the
    name does not change when the output root moves."""
    from lorasae.evals.identity import portable_settings

    return settings_variant(portable_settings(vars(args)), vars(SaeBenchArgs()), SHORT_NAMES, NOT_IN_NAME)


# --- paths ----------------------------------------------------------------------------------------


def results_root(output_dir: str | Path | None = None) -> Path:
    return Path(output_dir) if output_dir else eval_dir("SAE-Bench") / "results"


def results_dir(
    model_name: str, model_type: str, output_dir: str | Path | None = None, slot: str = ""
) -> Path:
    """`eval/SAE-Bench/results/<model>_<base|peft>/<slot>/`: one slot per SAE (base: `<sae_tag>`) and per
    SAE and adapter (peft: `<sae_tag>__<adapter label>`, `lorasae.evals.identity.result_slot`), followed by
    `__<variant>` for settings off the defaults (`result_variant`); without a slot, the model's folder (where the original, and this project before issue 25, wrote every SAE's
    results)."""
    folder = results_root(output_dir) / f"{sanitize(model_key(model_name))}_{model_type}"
    return folder / slot if slot else folder


def ravel_cache_dir(base: Path | None = None) -> Path:
    """`eval/SAE-Bench/artifacts/ravel/`: SAEBench's RAVEL prompt files, downloaded once."""
    return eval_dir("SAE-Bench", base) / "artifacts" / "ravel"


def peft_dicts_dir(base: Path | None = None) -> Path:
    return eval_dir("SAE-Bench", base) / "peft_dicts"


def peft_dict_path(model_name: str, adapter: str | Path, base: Path | None = None) -> Path:
    """`eval/SAE-Bench/peft_dicts/<model>_<sae_tag>_peft_<a>-<b>_rank_<r>.pt` (the original wrote
    `eval/SAE-Bench/gemma_peft_0-25_rank_64.pt`)."""
    adapter = Path(adapter)
    parts = [sanitize(model_key(model_name))]
    if adapter.parent.name.startswith("peft_"):
        parts += [sanitize(adapter.parent.parent.name), adapter.parent.name]
    parts.append(adapter.name)
    return peft_dicts_dir(base) / ("_".join(parts) + ".pt")
