"""Test setup shared by eval tests: a random default SAE and a rank-2 adapter on every layer, saved where the
store finds them for a world model."""

from __future__ import annotations

from pathlib import Path


def save_default_sae_and_adapter(world_model: Path) -> None:
    """A random TopK SAE at layer 1 (expansion 8, the model's default k) and a rank-2 LoRA on every layer
    trained on it, in the output root's folders for `world_model`."""
    from lorasae.core.paths import adapter_dir, sae_dir, sae_tag
    from lorasae.lora.adapters import attach_lora
    from lorasae.model.defaults import default_k
    from lorasae.model.load import d_model, load_model, num_layers
    from lorasae.sae import SaeConfig, TopKSAE

    model, _ = load_model(str(world_model), device="cpu")
    d, n = d_model(model), num_layers(model)
    k = default_k(d)
    TopKSAE(SaeConfig(d_in=d, d_sae=8 * d, k=k, hook_layer=1), fast=False).save(
        sae_dir(world_model.name, "normal", 8, k, 1)
    )
    attach_lora(model, layers=list(range(n)), rank=2).save_pretrained(
        str(adapter_dir(world_model.name, sae_tag(8, k), list(range(n)), 2))
    )
