"""The paper's models as explicit transformers configs, for random-weight models at their real shapes.

The hub configs (google/gemma-2-2b, google/gemma-2-9b, meta-llama/Llama-3.2-1B) are gated and this
project never downloads in tests or benchmarks, so their `config.json` values are written out here.
`random_model(name)` builds the model with random weights (no download); `shrunk_config` keeps the
architecture (soft-capping, sliding windows, GQA, tied head, RoPE scaling) at toy width for dry runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

# the values of each model's config.json on the hub (transformers 5 spelling: rope_parameters)
_GEMMA2_COMMON = dict(
    vocab_size=256_000,
    head_dim=256,
    hidden_activation="gelu_pytorch_tanh",
    max_position_embeddings=8192,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
    attention_bias=False,
    attention_dropout=0.0,
    query_pre_attn_scalar=256,
    sliding_window=4096,
    final_logit_softcapping=30.0,
    attn_logit_softcapping=50.0,
    tie_word_embeddings=True,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=2,
)

REAL_CONFIGS: dict[str, tuple[str, dict]] = {
    "gemma-2-2b": (
        "gemma2",
        dict(
            _GEMMA2_COMMON,
            hidden_size=2304,
            intermediate_size=9216,
            num_hidden_layers=26,
            num_attention_heads=8,
            num_key_value_heads=4,
        ),
    ),
    "gemma-2-9b": (
        "gemma2",
        dict(
            _GEMMA2_COMMON,
            hidden_size=3584,
            intermediate_size=14336,
            num_hidden_layers=42,
            num_attention_heads=16,
            num_key_value_heads=8,
        ),
    ),
    "llama-3.2-1b": (
        "llama",
        dict(
            vocab_size=128_256,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=64,
            hidden_act="silu",
            max_position_embeddings=131_072,
            rms_norm_eps=1e-5,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500_000.0,
                "factor": 32.0,
                "high_freq_factor": 4.0,
                "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8192,
            },
            attention_bias=False,
            mlp_bias=False,
            tie_word_embeddings=True,
            bos_token_id=128_000,
            eos_token_id=128_001,
        ),
    ),
}

# the paper's SAE layer of each model (Gemma Scope's layer 12 for the 2B; layer 20 for the 9B)
PAPER_LAYER = {"gemma-2-2b": 12, "gemma-2-9b": 20, "llama-3.2-1b": 12}


def real_config(name: str, **overrides: object):
    """The transformers config of `name` (a key of `REAL_CONFIGS`), with `overrides` applied."""
    from transformers import Gemma2Config, LlamaConfig

    if name not in REAL_CONFIGS:
        raise ValueError(f"Unknown model shape {name!r}: choose one of {sorted(REAL_CONFIGS)}.")
    arch, kwargs = REAL_CONFIGS[name]
    config_class = {"gemma2": Gemma2Config, "llama": LlamaConfig}[arch]
    return config_class(**{**kwargs, **overrides})


@dataclasses.dataclass(frozen=True)
class Shrink:
    """Toy width for dry runs: every width divided by `divisor`, `layers` decoder layers, `vocab` tokens."""

    divisor: int = 32
    layers: int = 4
    vocab: int = 4096


def shrunk_config(name: str, shrink: Shrink = Shrink(), **overrides: object):
    """`name`'s architecture at toy size (same head layout ratios, soft-capping, RoPE, tied head)."""
    _, kwargs = REAL_CONFIGS[name]
    d = max(64, kwargs["hidden_size"] // shrink.divisor)
    heads = max(2, kwargs["num_attention_heads"] // max(1, shrink.divisor // 4))
    kv = max(1, heads * kwargs["num_key_value_heads"] // kwargs["num_attention_heads"])
    small = dict(
        hidden_size=d,
        intermediate_size=4 * d,
        num_hidden_layers=shrink.layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=d // heads,
        vocab_size=shrink.vocab,
    )
    if "query_pre_attn_scalar" in kwargs:
        small["query_pre_attn_scalar"] = d // heads
    return real_config(name, **{**small, **overrides})


def random_model(config, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> torch.nn.Module:
    """A causal LM with random weights for `config`, built directly in `dtype` (no float32 copy: the
    2B model in float32 would need 10 GB), in eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    attn = "eager" if config.model_type == "gemma2" else None
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    return model.eval()


def save_random_model(config, folder: Path, tokenizer_dir: Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write a random-weight model with `config` plus the tokenizer (and world.json, if any) found in
    `tokenizer_dir` into `folder`, loadable by `lorasae.model.load.load_model(str(folder))` like any model."""
    import shutil

    from transformers import AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    model = random_model(config, dtype)
    model.save_pretrained(folder)
    del model
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    if (tokenizer_dir / "world.json").exists():
        shutil.copy(tokenizer_dir / "world.json", folder / "world.json")
    return folder


def param_count(config) -> int:
    """Parameters of the model of `config` (tied head counted once), from the shapes alone."""
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(config)
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
