"""What the evals use when not told: the SAE saved for a model (Gemma Scope's for Gemma when none is),
the adapter trained for an SAE, and the built-in world's seed. Shared by the steering and SAEBench evals."""

from __future__ import annotations

import re
from pathlib import Path

from lorasae.atomic import read_json
from lorasae.models import model_key
from lorasae.paths import root, sanitize

GEMMA_SCOPE_2B = "gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82"
"""The paper's Gemma-2-2B SAE (SPEC §2)."""
GEMMA_SCOPE_9B = "gemma-scope-9b-pt-res/layer_20/width_131k/average_l0_62"
"""The paper's Gemma-2-9B SAE (SPEC §2)."""

_PCT = re.compile(r"-(\d+)pct$")


def default_sae_source(model_name: str) -> str:
    """The newest final TopK SAE saved for the model (failing that, its latest checkpoint); Gemma Scope
    for Gemma when none is saved."""
    key = model_key(model_name)
    folder = root() / "saved_saes" / sanitize(key) / "normal"
    found = [p for p in folder.glob("*/model.layers.*") if (p / "cfg.json").exists()]
    final = [p for p in found if not _PCT.search(p.parent.name)]
    if final:
        return str(max(final, key=lambda p: (p / "cfg.json").stat().st_mtime))
    if found:
        return str(
            max(
                found,
                key=lambda p: (int(_PCT.search(p.parent.name).group(1)), (p / "cfg.json").stat().st_mtime),
            )
        )
    if key == "gemma":
        return GEMMA_SCOPE_2B
    raise FileNotFoundError(
        f"No SAE saved for model {key!r} under {folder}. Train one first "
        f"(`python train_sae.py --model_type {model_name}`) or pass --sae."
    )


def adapter_for_sae(
    model_name: str, sae_source: str, rank: int | None = None, lora_span: str | None = None
) -> Path:
    """The newest adapter trained for this SAE (optionally of one rank and layer span, `13-25`); for a
    final SAE, one trained on its 100% checkpoint also counts (the weights are the same). Raises
    FileNotFoundError listing what exists."""
    from lorasae.lora.adapters import find_adapter
    from lorasae.lora.sae_refs import source_tag

    tag = source_tag(sae_source)
    tags = [tag] if _PCT.search(tag) else [tag, f"{tag}-100pct"]
    error: FileNotFoundError | None = None
    for candidate in tags:
        try:
            return find_adapter(model_key(model_name), sae_tag=candidate, rank=rank, lora_span=lora_span)
        except FileNotFoundError as err:
            error = err
    assert error is not None
    raise error


def world_seed(model_folder: str | Path | None) -> int:
    """The `seed` in `world.json` beside a model's weights (the built-in model records it), else 0."""
    if not model_folder:
        return 0
    info = Path(model_folder) / "world.json"
    return int(read_json(info).get("seed", 0)) if info.is_file() else 0
