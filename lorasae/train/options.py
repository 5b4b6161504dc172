"""`train_sae.py`'s options, one small dataclass per feature, each checking its own fields
(`problems()` lists what is wrong, empty when nothing). `TrainSaeConfig` (config.py) is their union: the
fields stay flat so the flags, config files and saved `config.json` keep their names; rules that involve two
features (e.g. --e2e with a crosscoder) live in `combination_problems`, once. It imports nothing else of
`lorasae/train/` (the `--architecture` check reads the registry, `lorasae.sae.registry`, when it runs).

Field docstrings are `--help`."""

# no `from __future__ import annotations`: simple-parsing resolves the string annotation of a nested
# dataclass field (`sae_kwargs: SaeKwargs`) in the namespace of the base class (lorasae/core/cli.py), where the
# name does not exist; real annotation objects need no resolution.

from dataclasses import dataclass
from typing import Any

from lorasae.core.cli import field, parse_count
from lorasae.train.position_spec import check_positions
from lorasae.train.sae_kwargs import (
    CROSSCODER_ACTIVATIONS,
    JUMPRELU_SPARSITY_LOSSES,
    RECON_LOSSES,
    TRANSCODER_ACTIVATIONS,
    SaeKwargs,
)
from lorasae.train.sae_kwargs import at_least as _at_least

LR_SCHEDULERS = ("linear_decay", "cosine", "constant")
OPTIMIZERS = ("auto", "adam", "adam8bit")
OBJECTIVES = ("reconstruction", "kl")
KL_FT_SUFFIX = "__kl-ft"
"""The folder-name suffix of a `--objective kl` fine-tune (`<parent's tag>__kl-ft`)."""
MODIFICATIONS = ("none", "linear_error", "nonlinear_error", "sae_error")
MIN_CURVE_VAL_TOKENS = 2048  # paired CE differences over 2k tokens still resolve ~0.01 nat


def curve_val_tokens(num_val_tokens: int, num_train_tokens: int, num_evals: int) -> int:
    """Validation tokens per curve point: all of them, unless the run trains fewer tokens between two
    points than that; then the tokens trained per interval (at least 2048). Validation then costs about
    as much as training, where a 300k-token run of the built-in model validating 8k tokens 101 times spent
    ~85 % of its time in validation. The curve keeps its 101 points, each on the same (first) chunks, so
    differences between points stay paired; the final FVU/L0/dead statistics use every validation token."""
    per_interval = num_train_tokens // max(1, num_evals)
    return min(num_val_tokens, max(MIN_CURVE_VAL_TOKENS, per_interval))


@dataclass
class TokenOptions:
    """Which tokens train and validate the SAE, and at which layer it reads them."""

    layer: int | None = None
    """Decoder layer whose output (the residual stream after block L) the SAE reconstructs. Default: 12
    (the paper's) for models with more than 12 layers; 1 for smaller ones (the built-in tiny model)."""

    num_train_tokens: int | None = field(default=None, type=parse_count)
    """Training tokens; `300_000`, `2e9`, `15k` accepted. Default: 2B (the paper's Gemma budget; 4B for
    Llama in the paper) for models with d ≥ 1024, 200,000 (the demo's) for small ones (the built-in
    models); with --objective kl, Karvonen's 25M-token fine-tune for d ≥ 1024 and 32,768 tokens (seconds)
    for small models. Another budget is named in the SAE's folder (`expansion_8_L0_4__n-300000`), as is
    every setting that changes the weights when off its default."""

    num_val_tokens: int | None = field(default=None, type=parse_count)
    """Validation tokens (the first chunks of the data). Default: 1M; 8,192 for small models (d < 1024)."""

    ctx_len: int | None = None
    """Tokens per training sequence. Default: 1024, capped at the model's context window."""

    batch_size: int | None = None
    """Sequences per optimiser step, over all ranks together. Default: 1024 tokens per step as in the paper
    (one 1024-token sequence; 8 sequences of the tiny model's 128 tokens)."""

    harvest_steps: int | None = None
    """Training batches harvested per language-model forward (TopK objective; the SAE steps keep the
    batch size and token order). Default: 32k tokens' worth on CUDA (32 steps of 1024), 1 on the CPU."""

    text_field: str = "text"
    """Field holding the text in jsonl/parquet datasets."""

    def problems(self, max_positions: int | None = None) -> list[str]:
        out: list[str] = []
        _at_least(out, "ctx_len", self.ctx_len, 2)
        if self.ctx_len is not None and max_positions and self.ctx_len > max_positions:
            out.append(f"--ctx_len {self.ctx_len} exceeds the model's context window of {max_positions}")
        _at_least(out, "batch_size", self.batch_size, 1)
        _at_least(out, "harvest_steps", self.harvest_steps, 1)
        return out


@dataclass
class ArchitectureOptions:
    """The dictionary: its architecture, width, sparsity and dead-latent handling."""

    architecture: str = field(default="topk", alias=["--sae_type"])
    """topk (the paper's) | relu (ReLU + decoder-norm-weighted L1, SAELens's standard SAE) | crosscoder
    (one dictionary over the residual streams of --layers) | batchtopk (top k·B over the batch) |
    matryoshka (BatchTopK in nested prefixes, --matryoshka_widths) | jumprelu (per-latent thresholds, L0
    penalty --l0_coefficient) | transcoder | skip_transcoder (read layer L's MLP input, reconstruct its
    output; --transcoder_activation). Also --sae_type, the seed's name."""

    expansion_factor: int = 8
    """SAE width = d_model × expansion_factor."""

    k: int | None = None
    """Active latents per token. Default: 64; for small models (d < 1024) round(64·d/2304)."""

    auxk_alpha: float = 0.0
    """Weight of the AuxK dead-latent loss (Gao et al.); 0 = off, the paper's setting."""

    dead_after_tokens: int | None = field(default=None, type=parse_count)
    """A latent is dead when it has not fired in this many tokens. Default: 10M, at most a tenth of training."""

    sae_kwargs: SaeKwargs = field(default_factory=SaeKwargs)
    """Architecture settings (flat flags or dotted: --sae_kwargs.<name>)."""

    def problems(self, d_model: int) -> list[str]:
        out: list[str] = []
        _at_least(out, "expansion_factor", self.expansion_factor, 1)
        d_sae = d_model * self.expansion_factor
        if self.k is not None and not 1 <= self.k <= d_sae:
            out.append(f"--k must be between 1 and the SAE width {d_sae}, got {self.k}")
        _at_least(out, "auxk_alpha", self.auxk_alpha, 0)
        if self.sae_kwargs.matryoshka_widths and max(self.sae_kwargs.matryoshka_widths) > d_sae:
            out.append(
                f"--matryoshka_widths must not exceed the SAE width {d_sae}, got {self.sae_kwargs.matryoshka_widths}"
            )
        from lorasae.sae.registry import ARCHITECTURES  # the one list of architectures

        if self.architecture not in ARCHITECTURES:
            out.append(f"--architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        return out + self.sae_kwargs.problems()


@dataclass
class ObjectiveOptions:
    """What the SAE is trained to do (the reconstruction term itself is --recon_loss)."""

    e2e: bool = False
    """End-to-end SAE: train on KL(p_original ‖ p_spliced) only, instead of reconstruction (FVU)."""

    objective: str = "reconstruction"
    """reconstruction (FVU, or the KL with --e2e) | kl: KL fine-tuning of --init_sae (Karvonen, arXiv
    2503.17272): KL(p_original ‖ p_spliced) + --kl_mse_weight · FVU from the SAE's weights, for
    --num_train_tokens (default: the paper's 25M, the last few percent of training; 32,768 on the
    built-in models); saved as `<tag>__kl-ft` under normal/, its record naming the parent SAE."""

    kl_mse_weight: float | None = None
    """Weight of the FVU term added to the KL (--objective kl or --e2e). Default: 1.0 with --objective
    kl (Karvonen's KL+MSE mix), 0 with --e2e (the KL alone)."""

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.objective not in OBJECTIVES:
            out.append(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        _at_least(out, "kl_mse_weight", self.kl_mse_weight, 0)
        return out

    @property
    def trains_on_kl(self) -> bool:
        """Whether the loss is the KL to the original model (--e2e or --objective kl)."""
        return self.e2e or self.objective == "kl"

    @property
    def mse_weight(self) -> float:
        """--kl_mse_weight resolved: 1.0 for --objective kl, 0 for --e2e, unless given."""
        if self.kl_mse_weight is not None:
            return self.kl_mse_weight
        return 1.0 if self.objective == "kl" else 0.0


@dataclass
class OptimizerOptions:
    """The optimiser, its learning-rate schedule and clipping."""

    lr: float | None = None
    """Peak learning rate. Default: 2e-4 / sqrt(width / 2^14)."""

    lr_warmup_steps: int = 1000
    """Linear warm-up steps (capped at a tenth of the run), then linear decay to 0."""

    lr_scheduler: str = "linear_decay"
    """After the warm-up: linear_decay (to 0 at the end, the paper's), cosine (to 0) or constant."""

    max_grad_norm: float = 1.0
    """Gradient-norm clipping threshold."""

    optimizer: str = "auto"
    """adam | adam8bit | auto (8-bit Adam from bitsandbytes on CUDA when installed, else torch Adam)."""

    compile: bool = False
    """torch.compile the SAE's forward (the step's loss is the same as eager; faster on a GPU)."""

    def problems(self) -> list[str]:
        out: list[str] = []
        _at_least(out, "lr", self.lr, 0, strict=True)
        _at_least(out, "max_grad_norm", self.max_grad_norm, 0, strict=True)
        if self.optimizer not in OPTIMIZERS:
            out.append(f"--optimizer must be auto, adam or adam8bit, got {self.optimizer!r}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            out.append(f"--lr_scheduler must be one of {', '.join(LR_SCHEDULERS)}, got {self.lr_scheduler!r}")
        return out


@dataclass
class CurveOptions:
    """The validation curve: when its points are taken and on which tokens."""

    eval_every_pct: float = 1.0
    """Validate (spliced CE) before training and every this many percent of training."""

    curve_val_tokens: int | None = field(default=None, type=parse_count)
    """Validation tokens of each curve point (the first chunks). Default: all of --num_val_tokens, but for
    short runs the tokens trained between two points, at least 2048 (validation would otherwise dominate);
    the final FVU, L0 and dead-latent statistics use --final_val_tokens."""

    final_val_tokens: int | None = field(default=None, type=parse_count)
    """Validation tokens of the final FVU, L0 and never-active statistics (the first chunks). Default: all
    of --num_val_tokens. Training is unchanged: it starts after --num_val_tokens either way."""

    val_batch_size: int | None = None
    """Sequences per forward pass during validation. Default: 4096 tokens' worth (4 of 1024 tokens);
    1024 tokens' worth for small models (d < 1024)."""

    val_prefix_cache_gib: float = 1.0
    """Cache the clean residual after --layer of the curve's validation chunks once (per rank, at most
    this many GiB) so each curve point runs only the later layers and the head (same CE, exactly); above
    the cap, 0, or an architecture not known to allow it, every point runs the full forward."""

    def problems(self) -> list[str]:
        out: list[str] = []
        _at_least(out, "val_batch_size", self.val_batch_size, 1)
        _at_least(out, "final_val_tokens", self.final_val_tokens, 1)
        _at_least(out, "val_prefix_cache_gib", self.val_prefix_cache_gib, 0)
        if not 0 < self.eval_every_pct <= 100:
            out.append(f"--eval_every_pct must be in (0, 100], got {self.eval_every_pct}")
        return out


@dataclass
class PersistenceOptions:
    """What the run writes, and where it starts from."""

    checkpoint_every_pct: int = 10
    """Save an SAE checkpoint every this many percent of training (labelled with its percentage)."""

    save_every_steps: int = 0
    """Also save the resumable training state every N steps (0 = only at checkpoints)."""

    resume: bool = False
    """Continue the run with these settings from its latest training state."""

    overwrite: bool = False
    """Replace an SAE already saved at this run's folder that was trained with other settings (without it,
    train_sae.py refuses rather than silently overwriting it, its checkpoints and its curves), or train an
    identical finished run again (without it, such a rerun is skipped and says so)."""

    init_sae: str | None = None
    """Start from the weights of this SAE folder (SAELens format) instead of a fresh initialisation."""

    def problems(self) -> list[str]:
        out: list[str] = []
        if not 1 <= self.checkpoint_every_pct <= 100 or 100 % self.checkpoint_every_pct:
            out.append(f"--checkpoint_every_pct must divide 100, got {self.checkpoint_every_pct}")
        _at_least(out, "save_every_steps", self.save_every_steps, 0)
        if self.resume and self.init_sae:
            out.append("--resume and --init_sae exclude each other")
        return out


@dataclass
class LogOptions:
    """Progress bar and Weights & Biases."""

    log_every_steps: int = 10
    """Refresh the progress-bar metrics (and wandb) every N steps."""

    wandb_project: str = "lorasae"
    """Weights & Biases project (with --wandb)."""

    wandb_run_name: str | None = None
    """Weights & Biases run name (with --wandb). Default: <model>-L<layer>-<kind>."""

    def problems(self) -> list[str]:
        return []


@dataclass
class SourceOptions:
    """Where the rows come from besides one layer: crosscoder sources and the positions read."""

    layers: list[int] = field(default_factory=list)
    """Crosscoder sources: the decoder layers whose outputs one shared dictionary reconstructs (e.g.
    --layers 0 1). Default for --architecture crosscoder: --layer and the layer before it."""

    models: list[str] = field(default_factory=list)
    """A crosscoder across models (the seed's cross-model crosscoder): names or folders (e.g. two
    checkpoints of one run: --models <pre> <post>) whose outputs of --layer one shared dictionary
    reconstructs, one source per model, all fed the same tokens. Outputs go under the first one's name;
    --model may be left out. Empty: a crosscoder over --layers of --model."""

    positions: str = "all"
    """Positions of each chunk the SAE reads and is spliced at: all (the paper's), last, or an index
    (negative from the end; -2 = the grok world's answer position, the `=` of `a b = c`); the curve's CE
    then scores only the prediction made there. --num_train_tokens still counts whole chunks."""

    def problems(self, ctx_len: int | None) -> list[str]:
        out: list[str] = []
        if self.models and len(self.models) < 2:
            out.append(f"--models needs two models or more, got {self.models}")
        if self.models and self.layers:
            out.append("--models reads --layer of every model; leave out --layers")
        if ctx_len is not None and (bad := check_positions(self.positions, ctx_len)):
            out.append(bad)
        return out


@dataclass
class ModificationOptions:
    """Dark Matter's targets: train on f(x) instead of the residual x."""

    hidden_modification: str = "none"
    """Train on f(x) instead of the residual x at --layer (Dark Matter of SAEs: SAEs on another SAE's
    error parts, e = x − SAE(x)): none | linear_error (x·W* + b) | nonlinear_error (e − x·W* − b) |
    sae_error (e), with W*, b and the SAE from --modification_file. Such an SAE is never spliced: its curve
    holds the validation FVU on f(x), not a spliced CE; it is saved under saved_saes/<model>/modified/."""

    modification_file: str | None = None
    """safetensors file of --hidden_modification (W [d, d], b [d], the SAE source and layer), as
    eval/dark_matter/run.py writes it: data/dark_matter/<model>/linear_maps/<SAEInfo key>.safetensors."""

    def problems(self) -> list[str]:
        if self.hidden_modification not in MODIFICATIONS:
            return [
                f"--hidden_modification must be one of {', '.join(MODIFICATIONS)}, got {self.hidden_modification!r}"
            ]
        if self.hidden_modification == "none":
            return ["--modification_file needs --hidden_modification"] if self.modification_file else []
        if not self.modification_file:
            return [f"--hidden_modification {self.hidden_modification} needs --modification_file"]
        return []


def combination_problems(cfg: Any) -> list[str]:
    """The rules between two option groups of a `TrainSaeConfig` (each group checks its own fields)."""
    out: list[str] = []
    arch, crosscoder = cfg.architecture, cfg.architecture == "crosscoder"
    if cfg.sae_kwargs.recon_loss != "fvu" and cfg.sae_kwargs.recon_loss in RECON_LOSSES:
        if arch != "relu" or cfg.e2e:
            out.append(
                "--recon_loss sum_sq is for --architecture relu without --e2e (others train on FVU / the KL)"
            )
    if crosscoder and cfg.e2e:
        out.append("--e2e is for single-layer SAEs (topk or relu), not crosscoders")
    if cfg.models and not crosscoder:
        out.append("--models is for --architecture crosscoder (one source per model)")
    if cfg.models and cfg.model and cfg.model != cfg.models[0]:
        out.append(f"--model {cfg.model} is not the first of --models {cfg.models}")
    if cfg.positions != "all" and cfg.e2e:
        out.append("--positions is for the reconstruction objective, not --e2e")
    if cfg.objective == "kl" and not cfg.init_sae:
        out.append("--objective kl fine-tunes an existing SAE: give it with --init_sae <folder>")
    if cfg.objective == "kl" and (cfg.e2e or crosscoder or cfg.hidden_modification != "none"):
        out.append(
            "--objective kl fine-tunes a single-layer SAE: leave out --e2e, crosscoders and --hidden_modification"
        )
    if cfg.objective == "kl" and cfg.positions != "all":
        out.append("--positions is for the reconstruction objective, not --objective kl")
    if cfg.kl_mse_weight is not None and not (cfg.e2e or cfg.objective == "kl"):
        out.append("--kl_mse_weight weighs the FVU next to the KL: use it with --objective kl or --e2e")
    if cfg.hidden_modification in MODIFICATIONS[1:] and (cfg.e2e or crosscoder):
        out.append(
            "--hidden_modification trains a reconstruction SAE (topk or relu), not --e2e or a crosscoder"
        )
    return out


OPTION_GROUPS = (
    TokenOptions,
    ArchitectureOptions,
    ObjectiveOptions,
    OptimizerOptions,
    CurveOptions,
    PersistenceOptions,
    LogOptions,
    SourceOptions,
    ModificationOptions,
)
"""The feature groups `TrainSaeConfig` is composed of, in --help order."""

__all__ = [
    "CROSSCODER_ACTIVATIONS", "JUMPRELU_SPARSITY_LOSSES", "TRANSCODER_ACTIVATIONS",
    "KL_FT_SUFFIX", "LR_SCHEDULERS", "MODIFICATIONS", "OBJECTIVES", "OPTION_GROUPS", "RECON_LOSSES", "ArchitectureOptions",
    "CurveOptions", "LogOptions", "ModificationOptions", "ObjectiveOptions", "OptimizerOptions", "PersistenceOptions",
    "SaeKwargs", "SourceOptions", "TokenOptions", "combination_problems", "curve_val_tokens",
]  # fmt: skip
