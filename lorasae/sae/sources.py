"""``load_sae(source)``: any SAE the project can splice, behind one small interface (``SaeLike``).

Sources, tried in this order:
1. a local folder in SAELens format (``cfg.json`` + ``sae_weights.safetensors``): ours and any plain
   ``topk`` SAE become a :class:`TopKSAE`; other architectures (jumprelu, standard, gated, ...) are
   loaded by sae_lens and wrapped in :class:`SaeLensAdapter`;
2. a local folder in EleutherAI sparsify format (``cfg.json`` + ``sae.safetensors``) -> :class:`TopKSAE`;
3. a parent folder holding ``model.layers.<L>`` (or ``layers.<L>``) SAE subfolders: the only one, or
   the one for ``layer``;
4. ``release/sae_id`` of a sae-lens pretrained release (split on the first '/'), via
   ``sae_lens.SAE.from_pretrained``; Gemma Scope SAEs get ``skip_special_tokens=True``.
Anything else raises :class:`SaeNotFoundError` listing what exists nearby.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from lorasae.core.errors import LorasaeError
from lorasae.sae.config import SaeConfig, dtype_name, layer_from_hook_name, to_torch_dtype
from lorasae.sae.io import (
    CFG_FILENAME,
    WEIGHTS_FILENAME,
    SaeFormatError,
    is_plain_topk,
    read_cfg,
    read_weights,
)
from lorasae.sae.relu import SAE_LENS_ARCHITECTURE as RELU_ON_DISK
from lorasae.sae.relu import ReluSAE
from lorasae.sae.topk import TopKSAE, load_topk_sae, topk_from_state

SPARSIFY_WEIGHTS = "sae.safetensors"
_LAYER_DIR = re.compile(r"^(?:model\.)?layers?[._](\d+)$")


class SaeNotFoundError(LorasaeError, FileNotFoundError):
    """No SAE at the given source (or none of our checkpoints matches); the message lists what exists
    nearby and how to make one."""


class SaeShapeError(LorasaeError, ValueError):
    """The SAE does not fit the model (its d_in differs from the model's d_model)."""


@runtime_checkable
class SaeLike(Protocol):
    """What the rest of the project needs from an SAE."""

    W_dec: Tensor  # [d_sae, d_in]
    cfg: Any  # has d_in, d_sae
    hook_layer: int | None
    skip_special_tokens: bool

    def encode(self, x: Tensor) -> Tensor: ...
    def decode(self, z: Tensor) -> Tensor: ...
    def reconstruct(self, x: Tensor) -> Tensor: ...


class SaeLensAdapter(nn.Module):
    """A sae_lens SAE (any architecture) behind the SaeLike interface."""

    def __init__(self, sae: nn.Module, hook_layer: int | None = None, skip_special_tokens: bool = False):
        super().__init__()
        self.sae = sae
        self.hook_layer = hook_layer if hook_layer is not None else _sae_lens_hook_layer(sae)
        self.skip_special_tokens = skip_special_tokens

    @property
    def cfg(self) -> Any:
        return self.sae.cfg

    @property
    def W_dec(self) -> Tensor:
        return self.sae.W_dec

    @property
    def dtype(self) -> torch.dtype:
        return self.sae.W_dec.dtype

    @property
    def device(self) -> torch.device:
        return self.sae.W_dec.device

    def encode(self, x: Tensor) -> Tensor:
        return self.sae.encode(x.to(self.dtype))

    def decode(self, z: Tensor) -> Tensor:
        return self.sae.decode(z.to(self.dtype))

    @property
    def splice_site(self) -> str:
        """``"mlp"`` for a transcoder (its output replaces the MLP's), else ``"resid"``."""
        return "mlp" if hasattr(self.sae.cfg, "d_out") else "resid"

    def reconstruct(self, x: Tensor) -> Tensor:
        out = self.decode(self.encode(x))
        skip = getattr(self.sae, "W_skip", None)  # a skip transcoder's linear term
        return out if skip is None else out + x.to(self.dtype) @ skip.t()

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)

    def to(self, *args: Any, **kwargs: Any) -> SaeLensAdapter:  # keep sae_lens's cfg.dtype/device in sync
        self.sae = self.sae.to(*args, **kwargs)
        return self


# ---- helpers ---------------------------------------------------------------------------------------
def _sae_lens_hook_layer(sae: Any) -> int | None:
    meta = getattr(getattr(sae, "cfg", None), "metadata", None)
    hook_name = getattr(meta, "hook_name", None) if meta is not None else None
    return layer_from_hook_name(hook_name) if hook_name else None


def sae_hook_layer(sae: Any) -> int | None:
    """The decoder layer an SAE was trained on (None if it does not say)."""
    layer = getattr(sae, "hook_layer", None)
    if layer is None:
        layer = getattr(getattr(sae, "cfg", None), "hook_layer", None)
    return int(layer) if layer is not None else _sae_lens_hook_layer(sae)


def check_sae_fits(sae: Any, d_model: int, name: str = "the SAE") -> None:
    """Raise :class:`SaeShapeError` (a ValueError) unless the SAE reads d_model-wide activations (and,
    for a transcoder, writes d_model-wide MLP outputs)."""
    d_in = getattr(getattr(sae, "cfg", None), "d_in", None)
    d_in = int(d_in) if d_in is not None else int(sae.W_dec.shape[1])
    if d_in != int(d_model):
        raise SaeShapeError(
            f"{name} reads {d_in}-dimensional activations, but the model's residual stream has "
            f"d_model = {d_model}: it was trained on another model. Pick an SAE trained on this model "
            "(or the model this SAE was trained on)."
        )
    d_out = getattr(getattr(sae, "cfg", None), "d_out", None)  # a transcoder writes the MLP output
    if d_out is not None and int(d_out) != int(d_model):
        raise SaeShapeError(
            f"{name} writes {int(d_out)}-dimensional MLP outputs, but the model's d_model is {d_model}: "
            "it was trained on another model. Pick a transcoder trained on this model."
        )


def _nearby(path: Path) -> str:
    """A few lines listing what exists at, or above, a path that holds no SAE."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"nothing exists at {path} or above it"
    entries = sorted(
        p.name + ("/" if p.is_dir() else "") for p in probe.iterdir() if not p.name.startswith(".")
    )
    shown = ", ".join(entries[:30]) + (f", ... ({len(entries)} entries)" if len(entries) > 30 else "")
    return f"{probe} contains: {shown or '(nothing)'}"


def _detect(folder: Path) -> str | None:
    if not (folder / CFG_FILENAME).is_file():
        return None
    if (folder / WEIGHTS_FILENAME).is_file():
        return "sae_lens"
    if (folder / SPARSIFY_WEIGHTS).is_file():
        return "sparsify"
    return "incomplete"


def _layer_subfolders(folder: Path) -> dict[int, Path]:
    found = {}
    for sub in folder.iterdir() if folder.is_dir() else ():
        m = _LAYER_DIR.match(sub.name)
        if m and sub.is_dir() and _detect(sub) is not None:
            found[int(m.group(1))] = sub
    return dict(sorted(found.items()))


def _resolve_folder(folder: Path, layer: int | None) -> Path:
    if _detect(folder) is not None:
        return folder
    subs = _layer_subfolders(folder)
    if layer is not None and layer in subs:
        return subs[layer]
    if layer is None and len(subs) == 1:
        return next(iter(subs.values()))
    if subs:
        which = f"none is for layer {layer}" if layer is not None else "pass one of them (or the layer)"
        listing = ", ".join(p.name for p in subs.values())
        raise SaeNotFoundError(f"{folder} holds SAEs for layers {list(subs)} ({listing}); {which}.")
    raise SaeNotFoundError(
        f"No SAE in {folder}: expected cfg.json with sae_weights.safetensors (SAELens) or sae.safetensors "
        f"(sparsify), or model.layers.<L> subfolders holding them. {_nearby(folder)}."
    )


# ---- loaders ---------------------------------------------------------------------------------------
def load_sparsify(folder: str | Path, dtype: torch.dtype | None = None) -> Any:
    """An EleutherAI sparsify SAE folder as an equivalent TopKSAE (a transcoder's as a TopK Transcoder)."""
    folder = Path(folder)
    cfg = read_cfg(folder)
    w = read_weights(folder, SPARSIFY_WEIGHTS)
    where = str(folder / SPARSIFY_WEIGHTS)
    if cfg.get("transcode"):
        from lorasae.sae.transcoder import load_sparsify_transcoder

        layer = _LAYER_DIR.match(folder.name)
        coder = load_sparsify_transcoder(folder, cfg, w, int(layer.group(1)) if layer else None)
        return coder.to(dtype) if dtype is not None else coder
    unsupported = [
        reason
        for reason, bad in [
            (f"activation {cfg.get('activation')!r}", cfg.get("activation", "topk") != "topk"),
            ("skip connection", bool(cfg.get("skip_connection")) or "W_skip" in w),
            ("signed activations", bool(cfg.get("signed"))),
        ]
        if bad
    ]
    if unsupported:
        raise SaeFormatError(
            f"{folder}: sparsify SAE with {', '.join(unsupported)} is not supported (TopK SAEs only)."
        )
    missing = [n for n in ("encoder.weight", "W_dec", "b_dec") if n not in w]
    if missing:
        raise SaeFormatError(f"{where} lacks tensors {missing} (has {sorted(w)}); re-download or re-save it.")
    m, d = w["encoder.weight"].shape
    layer_match = _LAYER_DIR.match(folder.name)
    parent_cfg = folder.parent / "config.json"
    model_name = None
    if parent_cfg.is_file():
        try:
            model_name = read_cfg(folder.parent, "config.json").get("model")
        except SaeFormatError:
            model_name = None
    sae_cfg = SaeConfig(
        d_in=int(cfg.get("d_in", d)),
        d_sae=int(m),
        k=int(cfg["k"]),
        model_name=model_name,
        hook_layer=int(layer_match.group(1)) if layer_match else None,
    )
    weights = {
        "W_enc": w["encoder.weight"].t(),
        "b_enc": w.get("encoder.bias", torch.zeros(m, dtype=w["W_dec"].dtype)),
        "W_dec": w["W_dec"],
        "b_dec": w["b_dec"],
    }
    return topk_from_state(sae_cfg, weights, where, dtype)


def load_sae_lens_folder(folder: str | Path, device: str, dtype: torch.dtype) -> Any:
    """A SAELens-format folder: plain topk -> TopKSAE; our ReLU SAE (`standard`, lorasae metadata) ->
    ReluSAE; our crosscoder -> Crosscoder; any other architecture -> SaeLensAdapter."""
    folder = Path(folder)
    cfg = read_cfg(folder)
    if is_plain_topk(cfg):
        return load_topk_sae(folder, device=device, dtype=dtype)
    ours = "lorasae" in (cfg.get("metadata") or {})
    if cfg.get("architecture") == "crosscoder":  # ours only: sae_lens has no crosscoder
        from lorasae.sae.crosscoder import Crosscoder

        return Crosscoder.load(folder, device=device).to(dtype)
    if ours and cfg.get("architecture") == RELU_ON_DISK:  # our ReLU SAE: no need for sae_lens
        return ReluSAE.load(folder, device=device).to(dtype)
    ours_model = _load_issue28_kind(folder, cfg, device, dtype)
    if ours_model is not None:
        return ours_model
    read_weights(folder, load=False)  # a clear error for a missing or corrupt weights file
    import sae_lens

    sae = sae_lens.SAE.load_from_disk(folder, device=device, dtype=dtype_name(dtype))
    meta = cfg.get("metadata") or {}
    layer = meta.get("hook_layer")  # else the adapter reads metadata.hook_name
    return SaeLensAdapter(sae, layer, skip_special_tokens=bool(meta.get("exclude_special_tokens")))


def _load_issue28_kind(folder: Path, cfg: dict[str, Any], device: str, dtype: torch.dtype) -> Any:
    """A SAELens folder of a kind one of our classes models (BatchTopK / Matryoshka / JumpReLU saved
    as ``jumprelu``, ReLU transcoders), as that class; None for the rest (sae_lens loads those)."""
    from lorasae.sae.registry import architecture_from_cfg, sae_class

    name = architecture_from_cfg(cfg)
    if name not in ("batchtopk", "matryoshka", "jumprelu", "transcoder", "skip_transcoder"):
        return None
    try:
        return sae_class(name).load(folder, device=device).to(dtype)  # type: ignore[attr-defined]
    except SaeFormatError:
        if name in ("batchtopk", "matryoshka"):  # e.g. per-latent thresholds: still a plain JumpReLU
            return _load_issue28_kind(folder, {**cfg, "metadata": {}}, device, dtype)
        return None  # e.g. normalised activations: sae_lens models those


@functools.cache
def release_names() -> frozenset[str]:
    """Names of sae-lens's pretrained releases: the top-level keys of its ``pretrained_saes.yaml``,
    read without importing sae_lens (slow) or parsing the whole file."""
    spec = importlib.util.find_spec("sae_lens")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    yaml_path = Path(next(iter(spec.submodule_search_locations))) / "pretrained_saes.yaml"
    if not yaml_path.is_file():
        return frozenset()
    text = yaml_path.read_text(encoding="utf-8")
    return frozenset(re.findall(r"^([^\s#][^:\n]*):[ \t]*$", text, flags=re.MULTILINE))


def is_release(source: str) -> bool:
    """Whether ``source`` names a sae-lens pretrained release as ``release/sae_id``."""
    return "/" in source and source.split("/", 1)[0] in release_names()


def load_release(release: str, sae_id: str, device: str, dtype: torch.dtype) -> SaeLensAdapter:
    """A sae-lens pretrained SAE (downloaded from the hub on first use, then cached)."""
    import sae_lens

    try:
        sae = sae_lens.SAE.from_pretrained(release, sae_id, device=device, dtype=dtype_name(dtype))
    except ValueError:
        raise  # sae_lens lists the valid ids
    except Exception as err:  # network / hub errors: say what was attempted
        raise RuntimeError(
            f"Could not load sae-lens release {release!r}, sae_id {sae_id!r} ({type(err).__name__}: {err}). "
            "The first use downloads it from the Hugging Face hub: check network access and HF_TOKEN; "
            "with HF_HUB_OFFLINE=1 it must already be in the Hugging Face cache."
        ) from err
    skip = release.startswith("gemma-scope") or bool(
        getattr(sae.cfg.metadata, "exclude_special_tokens", False)
    )
    return SaeLensAdapter(sae, skip_special_tokens=skip)


def load_sae(
    source: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float32,
    layer: int | None = None,
) -> TopKSAE | SaeLensAdapter:
    """Load an SAE from a folder (SAELens or sparsify format, or a parent of ``model.layers.<L>``
    folders; ``layer`` picks one) or a sae-lens ``release/sae_id``. Returns it in eval mode."""
    device = str(device)
    dt = to_torch_dtype(dtype)
    path = Path(source).expanduser()
    if path.exists():
        folder = _resolve_folder(path, layer)
        kind = _detect(folder)
        if kind == "sparsify":
            sae: Any = load_sparsify(folder, dt).to(device)
        elif kind == "sae_lens":
            sae = load_sae_lens_folder(folder, device, dt)
        else:
            raise SaeFormatError(
                f"{folder} has {CFG_FILENAME} but no weights ({WEIGHTS_FILENAME} for SAELens, "
                f"{SPARSIFY_WEIGHTS} for sparsify): the save was interrupted or the copy is incomplete. "
                f"{_nearby(folder)}."
            )
        return sae.eval()
    text = str(source)
    if is_release(text):
        release, sae_id = text.split("/", 1)
        return load_release(release, sae_id, device, dt).eval()
    hint = ""
    if "/" in text:
        close = difflib.get_close_matches(text.split("/", 1)[0], sorted(release_names()), n=3)
        if close:
            hint = f" Did you mean the sae-lens release {' or '.join(close)}?"
    raise SaeNotFoundError(
        f"No SAE at {source!r}: not an existing folder, and not a sae-lens 'release/sae_id' "
        f"(e.g. gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82).{hint} {_nearby(path)}."
    )
