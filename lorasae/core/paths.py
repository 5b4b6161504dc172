"""Output path conventions of SPEC §3.4, in one place. Plots and the notebook read these paths.

The root is `$LORASAE_ROOT` if set, else the repository (the folder holding `train_sae.py`), else the
current directory. Tests point `LORASAE_ROOT` at a temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def root() -> Path:
    env = os.environ.get("LORASAE_ROOT")
    if env:
        return Path(env)
    if (_PACKAGE_PARENT / "train_sae.py").exists():
        return _PACKAGE_PARENT
    return Path.cwd()


def portable(path: str | Path) -> str:
    """A path as recorded in configs and settings: relative to the output root when it lies inside it
    (so a moved root still matches), else absolute. `path` is relative to the current directory."""
    absolute = Path(path).expanduser().resolve()
    try:
        return absolute.relative_to(root().resolve()).as_posix()
    except ValueError:
        return str(absolute)


def from_portable(text: str | Path) -> Path:
    """The file a `portable` path names (relative ones are under the output root)."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else root() / path


def _root(base: Path | None) -> Path:
    return Path(base) if base is not None else root()


def sanitize(name: str) -> str:
    """Make a model name or SAE source safe as one path component (`org/name` → `org--name`)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "--", name.strip("/")).strip("-") or "unnamed"


def examples_label(num_examples: int) -> str:
    """The original's `<N/1000>k` label: 15000 → `15`, 300 → `0.3`."""
    value = num_examples / 1000
    return str(int(value)) if value == int(value) else f"{value:g}"


# --- SAEs -----------------------------------------------------------------------------------------

SAE_KINDS = ("normal", "e2e", "modified")
"""Folders under saved_saes/<model>/: reconstruction (TopK/ReLU) SAEs, end-to-end ones, and SAEs of a
hidden-modification target (`train_sae.py --hidden_modification`)."""


def sae_tag(expansion_factor: int, k: int, pct: int | None = None) -> str:
    """`expansion_<E>_L0_<k>` for the final SAE, `expansion_<E>_L0_<k>-<pct>pct` for a checkpoint (of a
    run with the default settings: train_sae.py puts any other run's variant between the two,
    `expansion_<E>_L0_<k>__<variant>-<pct>pct`; `lorasae.train.state.checkpoint_dir`)."""
    tag = f"expansion_{expansion_factor}_L0_{k}"
    return tag if pct is None else f"{tag}-{pct}pct"


def relu_sae_tag(expansion_factor: int, sparsity: float, pct: int | None = None) -> str:
    """`expansion_<E>_relu_l1_<λ>[-<pct>pct]`: a ReLU + L1 SAE with L1 coefficient λ."""
    tag = f"expansion_{expansion_factor}_relu_l1_{sparsity:g}"
    return tag if pct is None else f"{tag}-{pct}pct"


def architecture_sae_tag(
    architecture: str, expansion_factor: int, k: int | None, coefficient: float, pct: int | None = None
) -> str:
    """`<architecture>_expansion_<E>_L0_<k>[-<pct>pct]` for a dictionary whose k sets its L0 (batchtopk,
    matryoshka, a TopK transcoder); `jumprelu_expansion_<E>_l0coef_<λ>[-<pct>pct]` for JumpReLU and
    `<architecture>_expansion_<E>_relu_l1_<λ>[-<pct>pct]` for a ReLU transcoder (λ = `coefficient` sets
    their L0)."""
    if architecture == "jumprelu":
        tag = f"jumprelu_expansion_{expansion_factor}_l0coef_{coefficient:g}"
        return tag if pct is None else f"{tag}-{pct}pct"
    if k is None:
        return f"{architecture}_{relu_sae_tag(expansion_factor, coefficient, pct)}"
    return f"{architecture}_{sae_tag(expansion_factor, k, pct)}"


def crosscoder_tag(
    expansion_factor: int,
    layers: list[int],
    k: int | None,
    sparsity: float | None,
    pct: int | None = None,
    models: list[str] | None = None,
) -> str:
    """`crosscoder_layers_<a>+<b>_expansion_<E>_L0_<k>` (TopK) or `..._relu_l1_<λ>` (ReLU), `-<pct>pct`
    for a checkpoint; across models (`models`: their short names), `crosscoder_models_<m1>+<m2>_...`."""
    inner = relu_sae_tag(expansion_factor, sparsity) if k is None else sae_tag(expansion_factor, k)
    names = [sanitize(m) for m in models] if models else [str(x) for x in layers]
    sources = f"{'models' if models else 'layers'}_{'+'.join(names)}"
    tag = f"crosscoder_{sources}_{inner}"
    return tag if pct is None else f"{tag}-{pct}pct"


def modified_sae_tag(modification: str, target_label: str, inner_tag: str) -> str:
    """`<modification>__<label>__<inner tag>`: an SAE trained on a hidden modification f(x) (e.g. the linear
    error of the SAE whose W* file is `<label>.safetensors`), under the kind `modified`."""
    return f"{modification}__{sanitize(target_label)}__{inner_tag}"


def layer_folder_name(layers: int | list[int]) -> str:
    """`model.layers.<L>` (one layer) or `model.layers.<a>+<b>` (a crosscoder's layers)."""
    return f"model.layers.{layers if isinstance(layers, int) else '+'.join(str(x) for x in layers)}"


def sae_dir(
    model: str,
    kind: str,
    expansion_factor: int,
    k: int,
    layer: int | list[int],
    pct: int | None = None,
    base: Path | None = None,
    tag: str | None = None,
) -> Path:
    """`saved_saes/<model>/<normal|e2e|modified>/expansion_<E>_L0_<k>[-<pct>pct]/model.layers.<L>/`: the
    folder of a run with default settings (any other run's: `lorasae.train.state.checkpoint_dir`); `tag`
    replaces the TopK tag (`relu_sae_tag`, `crosscoder_tag`, `modified_sae_tag`; it then carries the
    percentage itself). `modified` holds SAEs of a hidden-modification target (never spliced; the store
    looks under normal/ and e2e/ only)."""
    if kind not in SAE_KINDS:
        raise ValueError(f"SAE kind must be one of {', '.join(SAE_KINDS)}, got {kind!r}")
    return (
        _root(base)
        / "saved_saes"
        / sanitize(model)
        / kind
        / (tag or sae_tag(expansion_factor, k, pct))
        / layer_folder_name(layer)
    )


def sae_curve_path(
    quantity: str,
    model: str,
    kind: str,
    base: Path | None = None,
    sae: str | Path | None = None,
) -> Path:
    """`data/TopK/{time,val_loss}/<model>/<normal|e2e>_SAE.json`: the curve of the model's default SAE
    (`lorasae/model/defaults.py`, what train_sae.py writes with default flags; the original's names).
    Any other SAE (`sae`: its folder below `saved_saes/<model>/<kind>/`, `<tag>/model.layers.<L>`) gets
    its own file, `<kind>_<tag>__layer_<L>_SAE.json` (`layers_<a>+<b>` for a crosscoder), so no SAE run
    replaces another's curve. Each curve file has a run record naming its SAE (`lorasae/core/records.py`)."""
    if quantity not in ("time", "val_loss"):
        raise ValueError(f"curve quantity must be 'time' or 'val_loss', got {quantity!r}")
    name = f"{kind}_SAE.json"
    if sae is not None:
        tag, layer_dir = Path(sae).parent.name, Path(sae).name
        layers = layer_dir.removeprefix("model.layers.")
        where = f"layers_{layers}" if "+" in layers else f"layer_{layers}"
        name = f"{kind}_{sanitize(tag)}__{sanitize(where)}_SAE.json"
    return _root(base) / "data" / "TopK" / quantity / sanitize(model) / name


# --- LoRA -----------------------------------------------------------------------------------------

_LORA_SUFFIX = {"CE_increase": "CE_increase", "val_loss": "val_losses", "time": "time"}


def lora_span(lora_layers: list[int]) -> str:
    """`<a>-<b>`: the first and last adapted layer."""
    return f"{min(lora_layers)}-{max(lora_layers)}"


# identity settings that may appear in LoRA output names, with their short names
LORA_NAME_KEYS = {
    "num_train_examples": "n",
    "dataset": "data",
    "seed": "seed",
    "dtype": "dtype",
    "ctx_len": "ctx",
    "batch_size": "bs",
    "lr": "lr",
    "weight_decay": "wd",
    "max_grad_norm": "clip",
    "lora_alpha": "alpha",
    "lora_dropout": "drop",
    "num_val_tokens": "val",
    "eval_every": "every",
    "val_batch_size": "vbs",
    "kl_impl": "kl",
    "kl_chunk_size": "klchunk",
    "text_field": "field",
}


def name_variant(nondefault: Mapping[str, Any], short_names: Mapping[str, str] | None = None) -> str:
    """The one naming rule of outputs whose settings differ from a script's defaults (issue 25): each
    differing setting as `<short name>-<value>` joined by `_` (`short_names` order first, then by name; a
    setting without a short name goes by its own name); empty for a run with the defaults, whose names stay
    the original repository's. Numbers are written exactly (`repr`); a value that cannot be written exactly
    in a name (a path, text, a list) is shortened and the whole variant then ends in `_h-<digest>` of every
    differing setting, so two runs differing in any setting never share a name."""
    short_names = short_names or {}
    order = [k for k in short_names if k in nondefault] + sorted(
        k for k in nondefault if k not in short_names
    )
    parts, lossy = [], False
    for key in order:
        value = nondefault[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            text = sanitize(Path(str(value)).name)[:24]
            # a text ending like a checkpoint suffix (`-50pct`) would be read as one (`store.tags`)
            lossy = lossy or text != str(value) or re.search(r"\d+pct$", text) is not None
        else:
            text = repr(value)
        parts.append(f"{short_names.get(key, sanitize(key))}-{text}")
    if lossy:
        text = json.dumps(dict(nondefault), sort_keys=True, default=str)
        parts.append("h-" + hashlib.sha256(text.encode()).hexdigest()[:8])
    return "_".join(parts)


def nondefault_settings(
    settings: Mapping[str, Any], defaults: Mapping[str, Any], ignore: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """The settings (of those `defaults` knows, less `ignore`) whose value differs from the default."""
    return {k: v for k, v in settings.items() if k in defaults and k not in ignore and v != defaults[k]}


def settings_variant(
    settings: Mapping[str, Any],
    defaults: Mapping[str, Any],
    short_names: Mapping[str, str] | None = None,
    ignore: frozenset[str] | set[str] = frozenset(),
) -> str:
    """`name_variant` of the settings that differ from the script's defaults (`nondefault_settings`): what
    an eval result's slot carries beside the SAE and adapter ('' with the defaults: the original names)."""
    return name_variant(nondefault_settings(settings, defaults, ignore), short_names)


def with_variant(name: str, variant: str) -> str:
    """`<name>__<variant>`, or `name` itself for the default settings."""
    return f"{name}__{variant}" if variant else name


def lora_variant(nondefault: Mapping[str, Any]) -> str:
    """The naming rule of LoRA outputs (`name_variant` with `LORA_NAME_KEYS`, e.g. `n-300_lr-0.001`); every
    setting must have a short name there."""
    unknown = sorted(set(nondefault) - set(LORA_NAME_KEYS))
    if unknown:
        raise ValueError(f"no short name for LoRA setting(s) {unknown}: add them to LORA_NAME_KEYS")
    return name_variant(nondefault, LORA_NAME_KEYS)


def lora_json_path(
    quantity: str,
    model: str,
    sae_tag_: str,
    lora_layers: list[int],
    rank: int,
    num_examples: int,
    base: Path | None = None,
    variant: str = "",
) -> Path:
    """`data/TopK/<quantity>/<model>/<sae_tag>/peft_<a>-<b>_rank_<r>_<suffix>_<N/1000>k[__<variant>].json`
    (`variant`: `lora_variant` of the settings off their defaults other than the example count, which the
    name carries already)."""
    if quantity not in _LORA_SUFFIX:
        raise ValueError(f"quantity must be one of {sorted(_LORA_SUFFIX)}, got {quantity!r}")
    name = (
        f"peft_{lora_span(lora_layers)}_rank_{rank}_{_LORA_SUFFIX[quantity]}_{examples_label(num_examples)}k"
    )
    name += f"__{variant}.json" if variant else ".json"
    return _root(base) / "data" / "TopK" / quantity / sanitize(model) / sanitize(sae_tag_) / name


def adapter_dir(
    model: str,
    sae_tag_: str,
    lora_layers: list[int],
    rank: int,
    base: Path | None = None,
    variant: str = "",
) -> Path:
    """`saved_models/<model>/<sae_tag>/peft_<a>-<b>/rank_<r>[__<variant>]/` (PEFT format; `variant`:
    `lora_variant` of the settings off their defaults, the example count included)."""
    return (
        _root(base)
        / "saved_models"
        / sanitize(model)
        / sanitize(sae_tag_)
        / f"peft_{lora_span(lora_layers)}"
        / (f"rank_{rank}__{variant}" if variant else f"rank_{rank}")
    )


def results_csv(base: Path | None = None) -> Path:
    return _root(base) / "data" / "results.csv"


def sweep_manifest(model: str, base: Path | None = None, variant: str = "") -> Path:
    """`data/sweeps/<model>[__<variant>].json`: which SAEs each of sweep.py's sweeps used (the figures read
    it); `variant`: the sweep's settings off sweep.py's defaults (`lorasae.sweep.config.sweep_variant`), so
    a sweep with other settings never replaces another's manifest."""
    return _root(base) / "data" / "sweeps" / f"{with_variant(sanitize(model), variant)}.json"


SWEEP_CONFIG_SUFFIX = ".config.json"


def sweep_config(model: str, base: Path | None = None, variant: str = "") -> Path:
    """`data/sweeps/<model>[__<variant>].config.json`: the config every shard of that sweep reads (beside
    its manifest)."""
    manifest = sweep_manifest(model, base, variant)
    return manifest.with_name(manifest.name.removesuffix(".json") + SWEEP_CONFIG_SUFFIX)


def plots_dir(base: Path | None = None) -> Path:
    return _root(base) / "plots"


def eval_dir(suite: str, base: Path | None = None) -> Path:
    """`eval/<suite>/` (suite: `SAE-Bench`, `steering`, `benchmarks`)."""
    return _root(base) / "eval" / suite


def dictionaries_dir(model: str, base: Path | None = None) -> Path:
    """`data/dictionaries/<model>/`: the dictionary comparison's table (JSON + run record)."""
    return _root(base) / "data" / "dictionaries" / sanitize(model)


def tiny_model_root(base: Path | None = None) -> Path:
    """Folder holding the built-in model at `<this>/tiny/`."""
    return _root(base) / "saved_models"


# --- Dark Matter of SAEs (SPEC §7) ----------------------------------------------------------------


def dark_matter_dir(model: str, base: Path | None = None) -> Path:
    """`data/dark_matter/<model>/`: the analyses' numbers (JSON, tables)."""
    return _root(base) / "data" / "dark_matter" / sanitize(model)


def dark_matter_info_path(model: str, key: str, base: Path | None = None) -> Path:
    """`data/dark_matter/<model>/info/<key>.safetensors`: one cached SAEInfo."""
    return dark_matter_dir(model, base) / "info" / f"{sanitize(key)}.safetensors"


def dark_matter_map_path(model: str, key: str, base: Path | None = None) -> Path:
    """`data/dark_matter/<model>/linear_maps/<key>.safetensors`: W*, b of one SAEInfo and the SAE they
    belong to (`train_sae.py --modification_file`)."""
    return dark_matter_dir(model, base) / "linear_maps" / f"{sanitize(key)}.safetensors"


def dark_matter_results_path(model: str, variant: str = "", base: Path | None = None) -> Path:
    """`data/dark_matter/<model>/results[__<variant>].json` (`variant`: the run's settings off the script's
    defaults; its Markdown report beside it with `.md`)."""
    return dark_matter_dir(model, base) / f"{with_variant('results', variant)}.json"


def dark_matter_plots_dir(model: str, base: Path | None = None, variant: str = "") -> Path:
    """`plots/dark_matter/<model>[__<variant>]/`"""
    return plots_dir(base) / "dark_matter" / with_variant(sanitize(model), variant)


# --- the interpretability analysis (lorasae/interp/) ----------------------------------------------


def interp_dir(model: str, base: Path | None = None) -> Path:
    """`data/interp/<model>/`: the interpretability analysis's records of one model."""
    return _root(base) / "data" / "interp" / sanitize(model)


def interp_json_path(model: str, sae_tag_: str, adapter_label: str, base: Path | None = None) -> Path:
    """`data/interp/<model>/<sae_tag>/<adapter_label>.json` (label: `peft_<a>-<b>_rank_<r>`): per-layer
    distances and the per-token loss histogram of one SAE with one adapter."""
    return interp_dir(model, base) / sanitize(sae_tag_) / f"{sanitize(adapter_label)}.json"


# --- latent dashboards (lorasae/dashboard/) -------------------------------------------------------


def dashboard_dir(model: str, sae_tag_: str, base: Path | None = None) -> Path:
    """`eval/dashboard/<model>/<sae_tag>/`: the static HTML dashboards of one SAE's latents (a folder per
    adapter label, `base` without one)."""
    return eval_dir("dashboard", base) / sanitize(model) / sanitize(sae_tag_)
