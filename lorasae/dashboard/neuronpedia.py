"""`--export neuronpedia`: the dashboard's features as the payloads of Neuronpedia's `upload-batch` API.

The neuronpedia client (1.2.1, `FeatureRequest.upload_batch`) POSTs `{modelId, source, features}` with at
most 128 features per request; each file this writes is one such payload, so uploading is

    import json, neuronpedia
    neuronpedia.FeatureRequest().send_request(method="POST", uri="upload-batch", json=json.load(f))

(with NEURONPEDIA_API_KEY set). Neuronpedia names an SAE `<layer>-<set>`: the source here is
`<layer>-lorasae-<sae tag>`; the LoRA model is a model of its own, `<model>-lora-<adapter label>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasae.core.atomic import atomic_write_json
from lorasae.core.paths import sanitize
from lorasae.dashboard.features import upload_feature

MAX_FEATURES_PER_BATCH = 128
"""neuronpedia 1.2.1 `feature_request.MAX_FEATURES_PER_BATCH`."""


def neuronpedia_ids(
    model: str, layer: int, sae_tag: str, adapter_label: str | None
) -> dict[str, dict[str, str]]:
    """`{variant: {modelId, source}}` for 'base' (and 'lora' with an adapter); lower case, `-` separated."""

    def clean(text: str) -> str:
        return sanitize(text).lower().replace("_", "-").replace(".", "-")

    source = f"{layer}-lorasae-{clean(sae_tag)}"
    ids = {"base": {"modelId": clean(model), "source": source}}
    if adapter_label is not None:
        ids["lora"] = {"modelId": f"{clean(model)}-lora-{clean(adapter_label)}", "source": source}
    return ids


def upload_payloads(data: dict[str, Any], variant: str) -> list[dict[str, Any]]:
    """The upload-batch payloads of one model ('base' or 'lora') of the dashboard data."""
    ids = data["neuronpedia"][variant]
    features = [upload_feature(latent[variant]) for latent in data["latents"] if variant in latent]
    return [
        {
            "modelId": ids["modelId"],
            "source": ids["source"],
            "features": features[i : i + MAX_FEATURES_PER_BATCH],
        }
        for i in range(0, len(features), MAX_FEATURES_PER_BATCH)
    ]


def export_neuronpedia(data: dict[str, Any], folder: Path) -> list[Path]:
    """Write `<folder>/<variant>/batch-<i>.json` for each model; returns the files."""
    written = []
    for variant in data["neuronpedia"]:
        for i, payload in enumerate(upload_payloads(data, variant)):
            written.append(atomic_write_json(Path(folder) / variant / f"batch-{i:03d}.json", payload))
    return written


__all__ = ["MAX_FEATURES_PER_BATCH", "export_neuronpedia", "neuronpedia_ids", "upload_payloads"]
