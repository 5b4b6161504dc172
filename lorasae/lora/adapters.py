"""LoRA adapters on the decoder layers of a causal LM: which layers, which projections, attaching,
saving, finding and loading them again.

Evals import this module: `lora_layer_list`, `attach_lora`, `load_peft_model`, `find_adapter`,
`merge_adapter` are its stable API.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from lorasae.models import LayerOutOfRangeError, decoder_layers, layer_module_name, num_layers, unwrap
from lorasae.paths import root, sanitize

# The seven projections of a Llama/Gemma decoder layer (SPEC §3.2), in the order of the original.
PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Other architectures name them differently (GPT-2: c_attn/c_proj/c_fc; GPT-NeoX: query_key_value/...).
_OTHER_PROJECTIONS: tuple[str, ...] = (
    "c_attn",
    "c_proj",
    "c_fc",
    "query_key_value",
    "dense",
    "dense_h_to_4h",
    "dense_4h_to_h",
    "fc1",
    "fc2",
    "out_proj",
)

LORA_ALPHA = 32
LORA_DROPOUT = 0.1


def parse_layer_spec(spec: str | int | Sequence[int]) -> list[int]:
    """`"3"`, `"1,4"`, `"3-5"` (inclusive), `"1,3-5"`, `3` or `[1, 4]` → sorted unique layer indices."""
    if isinstance(spec, int):
        return [spec]
    if not isinstance(spec, str):
        return sorted({int(x) for x in spec})
    layers: set[int] = set()
    for part in re.split(r"[,\s]+", spec.strip().strip("[]")):
        if not part:
            continue
        if m := re.fullmatch(r"(\d+)\s*-\s*(\d+)", part):
            a, b = int(m.group(1)), int(m.group(2))
            if a > b:
                raise ValueError(f"Layer range {part!r} is empty: write the smaller index first ({b}-{a}).")
            layers.update(range(a, b + 1))
        elif re.fullmatch(r"-?\d+", part):
            layers.add(int(part))
        else:
            raise ValueError(
                f"Cannot parse layer spec {spec!r}: use a layer index (12), a list (1,4) or a range (3-5)."
            )
    if not layers:
        raise ValueError(f"Layer spec {spec!r} names no layers.")
    return sorted(layers)


def _check_layers(layers: Sequence[int], n_layers: int, what: str) -> None:
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise LayerOutOfRangeError(
            f"{what} {bad} out of range: this model has {n_layers} decoder layers (0 … {n_layers - 1})."
        )


def lora_layer_list(spec: str | Sequence[int], sae_layers: Sequence[int], n_layers: int) -> list[int]:
    """Layers that get adapters. `all` = every layer; `after` = the layers after the (first) SAE,
    L+1 … n−1; otherwise an explicit list or range (`3-5`, `1,4`)."""
    sae_layers = list(sae_layers)
    _check_layers(sae_layers, n_layers, "SAE layer(s)")
    if isinstance(spec, str) and spec.strip().lower() == "all":
        return list(range(n_layers))
    if isinstance(spec, str) and spec.strip().lower() == "after":
        if not sae_layers:
            raise ValueError("--LoRA_layers after needs an SAE layer.")
        first = min(sae_layers) + 1
        if first >= n_layers:
            raise ValueError(
                f"--LoRA_layers after: there are no layers after layer {first - 1} in a {n_layers}-layer "
                "model; use 'all' or an explicit list."
            )
        return list(range(first, n_layers))
    layers = parse_layer_spec(spec)
    _check_layers(layers, n_layers, "LoRA layer(s)")
    return layers


def format_layers(layers: Sequence[int]) -> str:
    """Compact layer spec for tables and results.csv: `[0,1,2,3,5]` → `0-3,5`; `[1]` → `1`."""
    layers = sorted(set(layers))
    parts: list[str] = []
    start = prev = None
    for layer in [*layers, None]:
        if start is not None and (layer is None or layer != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if layer is not None and start is None:
            start = layer
        prev = layer
    return ",".join(parts)


def target_modules(model: nn.Module, layers: Sequence[int]) -> list[str]:
    """Fully qualified names (within the transformers model) of the projections to adapt in `layers`:
    q, k, v, o, gate, up, down for Llama/Gemma; the equivalent linear layers for other architectures."""
    base = unwrap(model)
    _check_layers(list(layers), num_layers(model), "LoRA layer(s)")
    names: list[str] = []
    for layer in layers:
        prefix = layer_module_name(model, layer)
        block = decoder_layers(model)[layer]
        linear = [
            (name, module)
            for name, module in block.named_modules()
            if name and (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D")
        ]
        chosen = [name for name, _ in linear if name.rsplit(".", 1)[-1] in PROJECTIONS]
        if not chosen:
            chosen = [name for name, _ in linear if name.rsplit(".", 1)[-1] in _OTHER_PROJECTIONS]
        if not chosen:
            raise TypeError(
                f"Layer {layer} of {type(base).__name__} has no projection layers LoRA knows "
                f"({', '.join(PROJECTIONS)})."
            )
        names += [f"{prefix}.{name}" for name in chosen]
    return names


def attach_lora(
    model: nn.Module,
    layers: Sequence[int],
    rank: int,
    alpha: float = LORA_ALPHA,
    dropout: float = LORA_DROPOUT,
):
    """Wrap `model` in a PeftModel with LoRA (B initialised to 0, no bias) on the seven projections of
    `layers`. The base weights are frozen; only the adapters train. The model is modified in place
    (`peft_model.unload()` gives the plain model back)."""
    from peft import LoraConfig, TaskType, get_peft_model

    if rank < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank}.")
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        bias="none",
        target_modules=target_modules(model, layers),
        init_lora_weights=True,
    )
    model.requires_grad_(False)
    with _quiet_peft():
        return get_peft_model(model, config)


def adapted_layers(model: nn.Module) -> list[int]:
    """Indices of the decoder layers that hold LoRA weights."""
    found = []
    for index, block in enumerate(decoder_layers(model)):
        if any("lora_A" in name for name, _ in block.named_parameters()):
            found.append(index)
    return found


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft 0.21 reads a transformers attribute deprecated in v5 (a FutureWarning on every wrap)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def load_peft_model(model: nn.Module, adapter_dir: str | Path, is_trainable: bool = False):
    """Load a saved adapter (PEFT format) onto `model`; returns the PeftModel."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(
            f"{adapter_dir} holds no PEFT adapter (adapter_config.json missing); train one with "
            "`python train_lora.py ... --save_model`."
        )
    with _quiet_peft():
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)


def merge_adapter(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """The plain transformers model with the adapter's low-rank update merged into its weights."""
    return load_peft_model(model, adapter_dir).merge_and_unload()


def list_adapters(model_key: str, base: Path | None = None) -> list[Path]:
    """Every saved adapter folder `saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>/`."""
    folder = (Path(base) if base is not None else root()) / "saved_models" / sanitize(model_key)
    if not folder.is_dir():
        return []
    return sorted(p.parent for p in folder.glob("*/peft_*/rank_*/adapter_config.json"))


def find_adapter(
    model_key: str,
    sae_tag: str | None = None,
    rank: int | None = None,
    lora_span: str | None = None,
    base: Path | None = None,
) -> Path:
    """The newest saved adapter of `model_key` matching the given SAE tag, rank and span (`<a>-<b>`);
    raises FileNotFoundError listing what exists when nothing matches."""
    found = list_adapters(model_key, base)
    matches = [
        p
        for p in found
        if (sae_tag is None or p.parent.parent.name == sanitize(sae_tag))
        and (rank is None or p.name == f"rank_{rank}")
        and (lora_span is None or p.parent.name == f"peft_{lora_span}")
    ]
    if matches:
        return max(matches, key=lambda p: (p / "adapter_config.json").stat().st_mtime)
    wanted = ", ".join(
        f"{k}={v}" for k, v in (("sae_tag", sae_tag), ("rank", rank), ("span", lora_span)) if v is not None
    )
    where = (Path(base) if base is not None else root()) / "saved_models" / sanitize(model_key)
    listing = "\n".join(f"  {p.relative_to(where)}" for p in found) or "  (none)"
    raise FileNotFoundError(
        f"No saved LoRA adapter for model {model_key!r}{' with ' + wanted if wanted else ''} under {where}.\n"
        f"Adapters found:\n{listing}\n"
        "Train one with `python train_lora.py --model_type <model> --sae_layer <L> --rank <r> --save_model`."
    )
