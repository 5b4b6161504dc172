"""LoRA adapters on the decoder layers of a causal LM: which layers, which projections, attaching them
for training. Loading a saved adapter is `lorasae.model.adapters` (the store and the evals load adapters
without the trainer); finding saved adapters is the store's (`lorasae.store.find_adapter`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lorasae.core.layer_spec import format_layers, parse_layer_spec
from lorasae.model.adapters import quiet_peft
from lorasae.model.load import LayerOutOfRangeError, decoder_layers, layer_module_name, num_layers, unwrap

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

__all__ = [
    "LORA_ALPHA",
    "LORA_DROPOUT",
    "PROJECTIONS",
    "attach_lora",
    "format_layers",
    "lora_layer_list",
    "parse_layer_spec",
]

LORA_ALPHA = 32
LORA_DROPOUT = 0.1


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
    with quiet_peft():
        return get_peft_model(model, config)


def adapted_layers(model: nn.Module) -> list[int]:
    """Indices of the decoder layers that hold LoRA weights."""
    found = []
    for index, block in enumerate(decoder_layers(model)):
        if any("lora_A" in name for name, _ in block.named_parameters()):
            found.append(index)
    return found
