"""The dashboard's data: one record per latent in Neuronpedia's feature schema, per model.

A feature is what Neuronpedia's `upload-batch` takes for one latent (`index`, `density`, `activations`
as `{tokens, values, quantileMax, quantileMin, quantileFraction}`, `explanations`, `topLogits`,
`bottomLogits` as `{token, value}`), plus our own block under `lorasae` (firing count, mean and maximum
activation, the activation histogram) that the export leaves out. `latent_record` pairs the base model's
feature with the LoRA model's and what changed between them.
"""

from __future__ import annotations

from typing import Any

from lorasae.dashboard.collect import HIST_EDGES, Context, LatentStats
from lorasae.dashboard.logits import LatentLogits
from lorasae.dashboard.ranking import change_scores, top_overlap

UPLOAD_KEYS = ("index", "density", "activations", "explanations", "topLogits", "bottomLogits")
"""The keys of one feature in Neuronpedia's upload-batch payload (neuronpedia 1.2.1 FeatureRequest)."""


def _byte_pieces() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the character that stands for each byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


BYTE_PIECES = _byte_pieces()


def token_text(tokenizer, token_id: int) -> str:
    """A token as Neuronpedia shows it: its decoded text (leading spaces kept). A token that is only part
    of a multi-byte character (it decodes to U+FFFD) shows its bytes instead, e.g. `<0xE2><0x80>`."""
    text = tokenizer.decode([int(token_id)], clean_up_tokenization_spaces=False)
    if "\ufffd" not in text:
        return text
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if isinstance(piece, str) and piece and all(c in BYTE_PIECES for c in piece):
        return "".join(f"<0x{BYTE_PIECES[c]:02X}>" for c in piece)
    return piece if isinstance(piece, str) and piece else text


def feature(
    latent: int,
    stats: LatentStats,
    contexts: list[Context],
    logits: LatentLogits,
    tokenizer,
) -> dict[str, Any]:
    """One latent of one model in Neuronpedia's schema (plus the `lorasae` block)."""
    count = int(stats.counts[latent])
    hist = stats.hist[latent]
    return {
        "index": int(latent),
        "density": float(stats.frequency[latent]),
        "activations": [
            {
                "tokens": [token_text(tokenizer, t) for t in c.token_ids],
                "values": list(c.values),
                "quantileMax": None,
                "quantileMin": None,
                "quantileFraction": None,
            }
            for c in contexts
        ],
        "explanations": [],
        "topLogits": [{"token": token_text(tokenizer, t), "value": round(v, 4)} for t, v in logits.top],
        "bottomLogits": [{"token": token_text(tokenizer, t), "value": round(v, 4)} for t, v in logits.bottom],
        "lorasae": {
            "count": count,
            "meanActivation": float(stats.mean_active[latent]),
            "maxActivation": float(stats.top_values[0, latent]),
            "maxPositions": [c.position for c in contexts],
            "sequences": [c.seq for c in contexts],
            "histogram": {"log10Edges": [float(e) for e in HIST_EDGES], "counts": [int(x) for x in hist]},
        },
    }


def change_record(base: LatentStats, lora: LatentStats, latent: int) -> dict[str, Any]:
    """What the adapter changed about one latent."""
    return {
        "frequencyBase": float(base.frequency[latent]),
        "frequencyLora": float(lora.frequency[latent]),
        "meanActivationBase": float(base.mean_active[latent]),
        "meanActivationLora": float(lora.mean_active[latent]),
        "score": float(change_scores(base, lora)[latent]),
        "topOverlap": top_overlap(base, lora, latent),
    }


def latent_record(
    latent: int, features: dict[str, dict[str, Any]], base: LatentStats, lora: LatentStats | None
) -> dict[str, Any]:
    """`{index, base, lora?, change?}` of one latent (`features`: by model, 'base' and maybe 'lora')."""
    record: dict[str, Any] = {"index": int(latent), **features}
    if lora is not None:
        record["change"] = change_record(base, lora, latent)
    return record


def upload_feature(feature_: dict[str, Any]) -> dict[str, Any]:
    """The feature as the upload takes it (our `lorasae` block left out)."""
    return {key: feature_[key] for key in UPLOAD_KEYS}


__all__ = ["UPLOAD_KEYS", "change_record", "feature", "latent_record", "token_text", "upload_feature"]
