"""`train_sae.py`'s flags (SPEC §3.1): the paper's settings are the defaults. Field docstrings are `--help`.

Some defaults depend on the model and are filled in by `TrainSaeConfig.resolved(d_model, max_positions,
n_layers)`, with the rules of `lorasae/model_defaults.py` (shared by every script):
- `layer`: 12 (the paper's) for models with more than 12 layers; 1 for smaller ones (the built-in tiny one).
- `k`: 64 (the paper's) for models with d_model ≥ 1024; smaller models (the built-in tiny one, d=128)
  keep the paper's sparsity ratio k/d = 64/2304 ≈ 2.8 %, i.e. k = round(64·d/2304) (tiny: 4).
- `ctx_len`: 1024 (the paper's), capped at the model's `max_position_embeddings`.
- `batch_size`: the paper's 1024 tokens per step: 1 sequence of 1024 tokens; 8 of the tiny model's 128.
- `num_val_tokens`: 1,000,000 (the paper's) for models with d_model ≥ 1024; 8,192 (64 sequences of 128)
  for smaller ones. Short runs take their 101 curve points on fewer (`--curve_val_tokens`), each reusing
  the clean prefix (`lorasae/prefix.py`); differences between SAEs and checkpoints are paired (same
  tokens), so 8k tokens resolve them to a few thousandths of a nat.
- `lr`: 2e-4 / sqrt(m / 2^14) with m the SAE width (Gao et al.'s scaling law, the paper's choice).
- warm-up: `lr_warmup_steps` (1000), but never more than 10 % of the run (a 300-step run would otherwise
  never leave the warm-up); the paper's 2B-token runs are unaffected.
- `dead_after_tokens`: 10M (sparsify's), but at most 10 % of the training tokens.
"""

# no `from __future__ import annotations`: simple-parsing resolves the string annotation of a nested
# dataclass field (`sae_kwargs: SaeKwargs`) in the namespace of the base class (lorasae/cli.py), where the
# name does not exist; real annotation objects need no resolution.

import dataclasses
import math
from dataclasses import dataclass

from lorasae import model_defaults
from lorasae.cli import CommonArgs, field, parse_count
from lorasae.data import default_dataset
from lorasae.model_defaults import (
    PAPER_CTX_LEN,
    default_ctx_len,
    default_k,
    default_num_val_tokens,
    default_sae_layer,
    default_val_batch_size,
)
from lorasae.models import model_key
from lorasae.paths import portable
from lorasae.train.modification import modification_problems
from lorasae.train.objectives import recon_loss_problems
from lorasae.train.positions import Positions, parse_positions, source_problems
from lorasae.train.schedule import LR_SCHEDULERS
from lorasae.train.validation import curve_val_tokens

__all__ = ["ARCHITECTURES", "LR_SCHEDULERS", "SaeKwargs", "TrainSaeConfig", "default_batch_size", "default_k", "default_lr"]  # fmt: skip


ARCHITECTURES = ("topk", "relu", "crosscoder")


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


def default_batch_size(ctx_len: int) -> int:
    """Sequences per step giving the paper's 1024 tokens per step (at least one sequence)."""
    return max(1, PAPER_CTX_LEN // ctx_len)


def default_lr(d_sae: int) -> float:
    """Gao et al.'s scaling: 2e-4 / sqrt(m / 2^14)."""
    return 2e-4 / math.sqrt(d_sae / 2**14)


@dataclass
class TrainSaeConfig(CommonArgs):
    """Train a TopK SAE (or an end-to-end one with --e2e) on the residual stream after decoder layer L."""

    layer: int | None = None
    """Decoder layer whose output (the residual stream after block L) the SAE reconstructs. Default: 12
    (the paper's) for models with more than 12 layers; 1 for smaller ones (the built-in tiny model)."""

    num_train_tokens: int = field(default=2_000_000_000, type=parse_count)
    """Training tokens (2B for Gemma, 4B for Llama in the paper); `300_000`, `2e9`, `15k` accepted."""

    num_val_tokens: int | None = field(default=None, type=parse_count)
    """Validation tokens (the first chunks of the data). Default: 1M; 8,192 for small models (d < 1024)."""

    ctx_len: int | None = None
    """Tokens per training sequence. Default: 1024, capped at the model's context window."""

    batch_size: int | None = None
    """Sequences per optimiser step, over all ranks together. Default: 1024 tokens per step as in the paper
    (one 1024-token sequence; 8 sequences of the tiny model's 128 tokens)."""

    expansion_factor: int = 8
    """SAE width = d_model × expansion_factor."""

    k: int | None = None
    """Active latents per token. Default: 64; for small models (d < 1024) round(64·d/2304)."""

    e2e: bool = False
    """End-to-end SAE: train on KL(p_original ‖ p_spliced) only, instead of reconstruction (FVU)."""

    auxk_alpha: float = 0.0
    """Weight of the AuxK dead-latent loss (Gao et al.); 0 = off, the paper's setting."""

    lr: float | None = None
    """Peak learning rate. Default: 2e-4 / sqrt(width / 2^14)."""

    lr_warmup_steps: int = 1000
    """Linear warm-up steps (capped at a tenth of the run), then linear decay to 0."""

    max_grad_norm: float = 1.0
    """Gradient-norm clipping threshold."""

    optimizer: str = "auto"
    """adam | adam8bit | auto (8-bit Adam from bitsandbytes on CUDA when installed, else torch Adam)."""

    dead_after_tokens: int | None = field(default=None, type=parse_count)
    """A latent is dead when it has not fired in this many tokens. Default: 10M, at most a tenth of training."""

    eval_every_pct: float = 1.0
    """Validate (spliced CE) before training and every this many percent of training."""

    curve_val_tokens: int | None = field(default=None, type=parse_count)
    """Validation tokens of each curve point (the first chunks). Default: all of --num_val_tokens, but for
    short runs the tokens trained between two points, at least 2048 (validation would otherwise dominate);
    the final FVU, L0 and dead-latent statistics always use every validation token."""

    harvest_steps: int | None = None
    """Training batches harvested per language-model forward (TopK objective; the SAE steps keep the
    batch size and token order). Default: 32k tokens' worth on CUDA (32 steps of 1024), 1 on the CPU."""

    val_batch_size: int | None = None
    """Sequences per forward pass during validation. Default: 4096 tokens' worth (4 of 1024 tokens);
    1024 tokens' worth for small models (d < 1024)."""

    val_prefix_cache_gib: float = 1.0
    """Cache the clean residual after --layer of the curve's validation chunks once (per rank, at most
    this many GiB) so each curve point runs only the later layers and the head (same CE, exactly); above
    the cap, 0, or an architecture not known to allow it, every point runs the full forward."""

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

    text_field: str = "text"
    """Field holding the text in jsonl/parquet datasets."""

    log_every_steps: int = 10
    """Refresh the progress-bar metrics (and wandb) every N steps."""

    wandb_project: str = "lorasae"
    """Weights & Biases project (with --wandb)."""

    wandb_run_name: str | None = None
    """Weights & Biases run name (with --wandb). Default: <model>-L<layer>-<kind>."""

    architecture: str = field(default="topk", alias=["--sae_type"])
    """topk (the paper's) | relu (ReLU + decoder-norm-weighted L1, SAELens's standard SAE) | crosscoder
    (one dictionary over the residual streams of --layers). Also --sae_type, the seed's name."""

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

    sae_kwargs: SaeKwargs = field(default_factory=SaeKwargs)
    """Architecture settings (flat flags or dotted: --sae_kwargs.<name>)."""

    lr_scheduler: str = "linear_decay"
    """After the warm-up: linear_decay (to 0 at the end, the paper's), cosine (to 0) or constant."""

    compile: bool = False
    """torch.compile the SAE's forward (the step's loss is the same as eager; faster on a GPU)."""

    hidden_modification: str = "none"
    """Train on f(x) instead of the residual x at --layer (Dark Matter of SAEs: SAEs on another SAE's
    error parts, e = x − SAE(x)): none | linear_error (x·W* + b) | nonlinear_error (e − x·W* − b) |
    sae_error (e), with W*, b and the SAE from --modification_file. Such an SAE is never spliced: its curve
    holds the validation FVU on f(x), not a spliced CE; it is saved under saved_saes/<model>/modified/."""

    modification_file: str | None = None
    """safetensors file of --hidden_modification (W [d, d], b [d], the SAE source and layer), as
    eval/dark_matter/run.py writes it: data/dark_matter/<model>/linear_maps/<SAEInfo key>.safetensors."""

    # --- filled in by `resolved()` ---------------------------------------------------------------------
    def resolved(
        self, d_model: int, max_positions: int | None = None, n_layers: int | None = None
    ) -> "TrainSaeConfig":
        """A copy with every model-dependent default filled in, validated (the default layer needs
        `n_layers`; without it, the paper's 12)."""
        cfg = dataclasses.replace(self, sae_kwargs=dataclasses.replace(self.sae_kwargs))
        if cfg.sae_kwargs.topk is not None:
            cfg.k = cfg.sae_kwargs.topk
        if cfg.layer is None:
            cfg.layer = default_sae_layer(n_layers) if n_layers else model_defaults.PAPER_SAE_LAYER
        # crosscoder sources: --layers (default: --layer and the one before), unless --models
        if cfg.architecture == "crosscoder" and not cfg.models:
            cfg.layers = sorted(set(cfg.layers)) or ([cfg.layer - 1, cfg.layer] if cfg.layer > 0 else [0, 1])
            cfg.layer = max(cfg.layers)  # the truncated forward runs up to the last source
        cfg.dataset = cfg.dataset or default_dataset(cfg.model_name)
        if cfg.modification_file:  # the same file however it was named (relative, absolute)
            cfg.modification_file = portable(cfg.modification_file)
        cfg.k = cfg.k if cfg.k is not None else default_k(d_model)
        cfg.ctx_len = cfg.ctx_len if cfg.ctx_len is not None else default_ctx_len(max_positions)
        cfg.batch_size = cfg.batch_size if cfg.batch_size is not None else default_batch_size(cfg.ctx_len)
        if cfg.val_batch_size is None:
            cfg.val_batch_size = default_val_batch_size(d_model, cfg.ctx_len)
        if cfg.num_val_tokens is None:
            cfg.num_val_tokens = default_num_val_tokens(d_model)
        if cfg.curve_val_tokens is None:
            cfg.curve_val_tokens = curve_val_tokens(cfg.num_val_tokens, cfg.num_train_tokens, cfg.num_evals)
        d_sae = d_model * cfg.expansion_factor
        if d_sae < 1:  # default_lr divides by the width: say why instead (validate lists the rest)
            cfg.validate(d_model, max_positions)
        cfg.lr = cfg.lr if cfg.lr is not None else default_lr(d_sae)
        if cfg.dead_after_tokens is None:
            cfg.dead_after_tokens = max(1, min(10_000_000, cfg.num_train_tokens // 10))
        cfg.validate(d_model, max_positions)
        return cfg

    def validate(self, d_model: int, max_positions: int | None = None) -> None:
        problems = []
        if self.expansion_factor < 1:
            problems.append(f"--expansion_factor must be ≥ 1, got {self.expansion_factor}")
        d_sae = d_model * self.expansion_factor
        if self.k is not None and not 1 <= self.k <= d_sae:
            problems.append(f"--k must be between 1 and the SAE width {d_sae}, got {self.k}")
        if self.ctx_len is not None and self.ctx_len < 2:
            problems.append(f"--ctx_len must be ≥ 2, got {self.ctx_len}")
        if self.ctx_len is not None and max_positions and self.ctx_len > max_positions:
            problems.append(f"--ctx_len {self.ctx_len} exceeds the model's context window of {max_positions}")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"--batch_size must be ≥ 1, got {self.batch_size}")
        if self.harvest_steps is not None and self.harvest_steps < 1:
            problems.append(f"--harvest_steps must be ≥ 1, got {self.harvest_steps}")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            problems.append(f"--val_batch_size must be ≥ 1, got {self.val_batch_size}")
        if self.val_prefix_cache_gib < 0:
            problems.append(f"--val_prefix_cache_gib must be ≥ 0, got {self.val_prefix_cache_gib}")
        if not 0 < self.eval_every_pct <= 100:
            problems.append(f"--eval_every_pct must be in (0, 100], got {self.eval_every_pct}")
        if not 1 <= self.checkpoint_every_pct <= 100 or 100 % self.checkpoint_every_pct:
            problems.append(f"--checkpoint_every_pct must divide 100, got {self.checkpoint_every_pct}")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"--lr must be > 0, got {self.lr}")
        if self.auxk_alpha < 0:
            problems.append(f"--auxk_alpha must be ≥ 0, got {self.auxk_alpha}")
        if self.max_grad_norm <= 0:
            problems.append(f"--max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.save_every_steps < 0:
            problems.append(f"--save_every_steps must be ≥ 0, got {self.save_every_steps}")
        if self.optimizer not in ("auto", "adam", "adam8bit"):
            problems.append(f"--optimizer must be auto, adam or adam8bit, got {self.optimizer!r}")
        if self.architecture not in ARCHITECTURES:
            problems.append(
                f"--architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}"
            )
        if self.lr_scheduler not in LR_SCHEDULERS:
            problems.append(
                f"--lr_scheduler must be one of {', '.join(LR_SCHEDULERS)}, got {self.lr_scheduler!r}"
            )
        if self.sae_kwargs.sparsity < 0:
            problems.append(f"--sparsity must be ≥ 0, got {self.sae_kwargs.sparsity}")
        if self.sae_kwargs.sparsity_warmup_steps < 0:
            problems.append(
                f"--sparsity_warmup_steps must be ≥ 0, got {self.sae_kwargs.sparsity_warmup_steps}"
            )
        if self.sae_kwargs.crosscoder_activation not in ("topk", "relu"):
            problems.append(
                f"--crosscoder_activation must be topk or relu, got {self.sae_kwargs.crosscoder_activation!r}"
            )
        problems += recon_loss_problems(self.sae_kwargs.recon_loss, self.architecture, self.e2e)
        if self.architecture == "crosscoder" and self.e2e:
            problems.append("--e2e is for single-layer SAEs (topk or relu), not crosscoders")
        problems += source_problems(self)
        if self.resume and self.init_sae:
            problems.append("--resume and --init_sae exclude each other")
        problems += modification_problems(self)
        if problems:
            raise ValueError("Invalid train_sae settings:\n  " + "\n  ".join(problems))

    # --- derived quantities ----------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """--model (or --model_type); with --models, the first of them (outputs are named after it)."""
        return self.models[0] if self.models else (self.model or self.model_type)

    @property
    def position_index(self) -> Positions:
        """--positions parsed: None (every position) or one index."""
        return parse_positions(self.positions)

    @property
    def kind(self) -> str:
        """`e2e`, `modified` (a --hidden_modification target) or `normal`: the SAE kind in output paths."""
        return "e2e" if self.e2e else "modified" if self.hidden_modification != "none" else "normal"

    @property
    def model_key(self) -> str:
        """Short model name used in output paths (`tiny`, `gemma`, `llama`, ...)."""
        return model_key(self.model_name)

    @property
    def tokens_per_step(self) -> int:
        assert self.ctx_len is not None and self.batch_size is not None, "call resolved() first"
        return self.batch_size * self.ctx_len

    @property
    def total_steps(self) -> int:
        """Optimiser steps: enough global batches to cover `num_train_tokens` (at least one)."""
        return max(1, math.ceil(self.num_train_tokens / self.tokens_per_step))

    @property
    def warmup_steps(self) -> int:
        return max(1, min(self.lr_warmup_steps, self.total_steps // 10))

    @property
    def num_evals(self) -> int:
        """Evaluation intervals: the curve has `num_evals + 1` points (first before training, last at 100%)."""
        return max(1, round(100 / self.eval_every_pct))

    def eval_steps(self) -> list[int]:
        """Step after which curve point i is taken: round(i/n · total) for i = 0..n (0 = before training)."""
        n = self.num_evals
        return [round(i * self.total_steps / n) for i in range(n + 1)]

    def checkpoint_steps(self) -> dict[int, int]:
        """{percentage: step after which that checkpoint is saved} for 10%, 20%, …, 100%."""
        pcts = range(self.checkpoint_every_pct, 101, self.checkpoint_every_pct)
        return {pct: max(1, round(pct * self.total_steps / 100)) for pct in pcts}

    # fields whose change makes a saved training state incompatible with this run
    RESUME_KEYS = (
        "layer",
        "num_train_tokens",
        "num_val_tokens",
        "ctx_len",
        "batch_size",
        "expansion_factor",
        "k",
        "e2e",
        "auxk_alpha",
        "lr",
        "lr_warmup_steps",
        "max_grad_norm",
        "dead_after_tokens",
        "eval_every_pct",
        "checkpoint_every_pct",
        "dataset",
        "seed",
        "text_field",
        "architecture",
        "layers",
        "sae_kwargs",
        "lr_scheduler",
        "hidden_modification",
        "modification_file",
        "models",
        "positions",
    )
