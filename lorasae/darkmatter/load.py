"""Where the analysed model, SAE and tokens come from, and the SAEInfo cache.

`_load_model_and_sae` loads a model (optionally with a LoRA adapter merged in) and an SAE through the
store (`lorasae.store.load_bundle`), which checks they fit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from lorasae.core import paths
from lorasae.darkmatter.info import SAEInfo, build_sae_info
from lorasae.darkmatter.tokens import TokenRegion, stream_chunks
from lorasae.evals.capabilities import consumer
from lorasae.model.data import default_dataset, load_token_split
from lorasae.model.load import model_key, special_token_ids


def _load_model_and_sae(
    model_name: str,
    sae_source: str,
    device: torch.device | str = "cpu",
    adapter: str | Path | None = None,
    layer: int | None = None,
    dtype: str = "float32",
) -> tuple[nn.Module, object, nn.Module, int]:
    """(model, tokenizer, sae, layer) through the store: the model (with `adapter` merged in when given)
    and the SAE, checked against each other (width, layer range)."""
    from lorasae.store import external_ref, load_bundle

    adapter_dir = Path(adapter) if adapter is not None else None
    bundle = load_bundle(
        model_name,
        [external_ref(sae_source, layer)],
        adapter_dir,
        merge=True,
        device=device,
        dtype=dtype,
        suite=consumer("dark_matter"),
    )
    return bundle.model, bundle.tokenizer, bundle.sae, bundle.layer


def analysis_ctx_len(model: nn.Module) -> int:
    """Context of the analysed chunks: 1024 (the paper's), capped at the model's window."""
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 1024
    return min(1024, int(max_pos))


def token_chunks(
    model_name: str, tokenizer, num_tokens: int, dataset: str | None, ctx_len: int, seed: int, start: int = 0
) -> torch.Tensor:
    """`num_tokens` tokens (whole chunks) of the dataset from chunk `start` of the packed stream, as every
    script packs it (`start` 0: `load_token_split`'s validation chunks with `num_val_tokens = num_tokens`)."""
    source = dataset or default_dataset(model_name)
    if start == 0:
        return load_token_split(source, tokenizer, ctx_len, num_tokens, seed).val
    count = max(1, -(-num_tokens // ctx_len))
    region = TokenRegion(ctx_len, start, count, tokenizer.bos_token_id is not None)
    return stream_chunks(source, tokenizer, region, seed)


def _label(source: str) -> str:
    """A short readable name for an SAE source (`expansion_8_L0_4`, `gemma-scope-…--width_16k--…`)."""
    path = Path(source)
    if path.exists():
        parts = [p for p in path.resolve().parts if p not in ("normal", "e2e")]
        return paths.sanitize("--".join(parts[-2:]))
    return paths.sanitize(source)


def info_key(model_name: str, sae_source: str, adapter: str | Path | None, **settings) -> str:
    """Cache file stem: the SAE's label plus a hash of everything that determines the record. Local paths
    enter relative to the output root (`paths.portable`), so a moved root keeps its caches' names."""
    from lorasae.core.paths import portable

    src = portable(sae_source) if Path(sae_source).exists() else sae_source
    lora = (portable(adapter) if Path(adapter).exists() else str(adapter)) if adapter else None
    ident = {"model": model_name, "sae": src, "adapter": lora, **settings}
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{_label(sae_source)}{'__lora' if adapter else ''}__{digest}"


def get_sae_info(
    model_name: str,
    sae_source: str,
    num_tokens: int = 50_000,
    dataset: str | None = None,
    device: torch.device | str = "cpu",
    adapter: str | Path | None = None,
    layer: int | None = None,
    ctx_len: int | None = None,
    seed: int = 42,
    batch_size: int = 8,
    loaded: tuple[nn.Module, object, nn.Module, int] | None = None,
    progress: bool = True,
    start: int = 0,
    chunks: torch.Tensor | None = None,
    clean: SAEInfo | None = None,
) -> SAEInfo:
    """The SAEInfo of `sae_source` on `num_tokens` tokens of `dataset` from chunk `start` of the stream
    (`tokens.analysis_region` picks it after what the SAEs and the adapter read), from the cache
    `data/dark_matter/<model>/info/<key>.safetensors` when there, else built and cached. `loaded` passes
    an already loaded (model, tokenizer, sae, layer) to save a reload, `chunks` the already packed tokens,
    `clean` another SAE's SAEInfo of the same model, layer and tokens (its forward reused, `build_sae_info`)."""
    model, tokenizer, sae, layer = loaded or _load_model_and_sae(
        model_name, sae_source, device, adapter, layer
    )
    ctx_len = ctx_len or analysis_ctx_len(model)
    key = info_key(model_name, sae_source, adapter, layer=layer, num_tokens=num_tokens, dataset=dataset,
                   ctx_len=ctx_len, seed=seed, **({"start": start} if start else {}))  # fmt: skip
    path = paths.dark_matter_info_path(model_key(model_name), key)
    if path.exists():
        return SAEInfo.load(path)
    if chunks is None:
        chunks = token_chunks(model_name, tokenizer, num_tokens, dataset, ctx_len, seed, start)
    meta = {"model": model_name, "sae": sae_source, "adapter": str(adapter) if adapter else None,
            "dataset": dataset or default_dataset(model_name), "seed": seed, "start_chunk": start}  # fmt: skip
    info = build_sae_info(
        model, sae, chunks, layer, special_token_ids(tokenizer), batch_size, meta, progress, clean
    )
    info.save(path)
    return info
