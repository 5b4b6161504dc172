"""Hidden-modification targets of `train_sae.py` (Dark Matter of SAEs, Engels et al. Fig. 8): the SAE
reconstructs f(x) instead of the residual x after `--layer`, where f is a part of another SAE's error
e = x − SAE(x) (the project's sign, `lorasae/darkmatter/linear.py`):

- `linear_error`: x·W* + b, the part of e that a linear map of x predicts;
- `nonlinear_error`: e − x·W* − b, the rest (the two sum to e);
- `sae_error`: e itself.

W*, b and the SAE come from one safetensors file (`W` [d, d], `b` [d]; metadata: the SAE source, layer,
model, and whether special positions are left out) that the dark-matter pipeline writes with
`save_modification_file` at `paths.dark_matter_map_path`. Rows at special positions (BOS/EOS/PAD) are
left out when the file says so: the SAEInfo that W* was fit on leaves them out, and the error there is
an outlier that no W* was fit to.

`HiddenModification.rows(hidden, ids)` is what the trainer calls wherever activations are produced (the
activation buffer, the b_dec initialisation, validation's FVU), so training and validation see one f(x).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from lorasae.core.atomic import atomic_save_file
from lorasae.core.errors import LorasaeError
from lorasae.core.paths import from_portable


class ModificationSettings(Protocol):
    """The run settings this module reads (`TrainSaeConfig` has them; named here so that the config, which
    calls `modification_problems` in its own validation, and this module import in one direction only)."""

    hidden_modification: str
    modification_file: str | None
    layer: int | None
    e2e: bool
    architecture: str

    @property
    def model_key(self) -> str: ...

    @property
    def model_name(self) -> str: ...


"""Values of `--hidden_modification` ("none": the residual itself, a normal SAE)."""

_NEEDS_SAE = ("nonlinear_error", "sae_error")


class ModificationError(LorasaeError, ValueError):
    """`--hidden_modification` / `--modification_file` cannot be used with this model and layer."""


def save_modification_file(
    path: Path, W: Tensor, b: Tensor, sae_source: str, layer: int, model: str, skip_special: bool = True
) -> Path:
    """Write W [d, d], b [d] (float32) and what they belong to, atomically."""
    meta = {
        "sae": str(sae_source),
        "layer": str(int(layer)),
        "model": model,
        "skip_special": json.dumps(skip_special),
    }
    tensors = {"W": W.detach().float().cpu().contiguous(), "b": b.detach().float().cpu().contiguous()}
    return atomic_save_file(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def plain_rows(hidden: Tensor, ids: Tensor) -> Tensor:
    """The residual itself as rows [B·T, d] float32 (no modification)."""
    return hidden.reshape(-1, hidden.shape[-1]).float()


@dataclass
class HiddenModification:
    """f(x) of one modification, with what it needs (W*, b, the SAE) on one device."""

    name: str
    W: Tensor
    """[d, d] float32."""
    b: Tensor
    """[d] float32."""
    sae: nn.Module | None
    """The SAE whose error is split (None for `linear_error`, which needs only W*, b)."""
    skip_special: bool
    special_ids: Tensor
    """Token ids whose rows are left out when `skip_special` (the trainer's tokenizer's BOS/EOS/PAD)."""
    meta: dict[str, str]

    def to(self, device: torch.device | str) -> HiddenModification:
        sae = self.sae.to(device) if self.sae is not None else None
        return replace(
            self, W=self.W.to(device), b=self.b.to(device), sae=sae, special_ids=self.special_ids.to(device)
        )

    def with_special_ids(self, ids: Sequence[int]) -> HiddenModification:
        return replace(self, special_ids=torch.tensor(sorted(ids), dtype=torch.long, device=self.W.device))

    @torch.no_grad()
    def transform(self, x: Tensor) -> Tensor:
        """f(x) for rows x [N, d] (float32)."""
        if self.name == "linear_error":
            return x @ self.W + self.b
        assert self.sae is not None, f"{self.name} needs the SAE"
        error = x - self.sae.reconstruct(x).float()  # type: ignore[operator]
        return error if self.name == "sae_error" else error - (x @ self.W + self.b)

    def rows(self, hidden: Tensor, ids: Tensor) -> Tensor:
        """f(x) of the residual `hidden` [B, T, d] of token ids [B, T], as rows [n, d] float32 (special
        positions left out when `skip_special`)."""
        x = plain_rows(hidden, ids)
        if self.skip_special and self.special_ids.numel():
            x = x[~torch.isin(ids.reshape(-1).to(x.device), self.special_ids.to(x.device))]
        return self.transform(x)


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    if not path.is_file():
        raise ModificationError(
            f"--modification_file {path} does not exist. eval/dark_matter/run.py writes one per analysed SAE "
            "under data/dark_matter/<model>/linear_maps/ (W*, b and the SAE source)."
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as err:
        raise ModificationError(
            f"--modification_file {path} is not a readable safetensors file ({err})"
        ) from err
    missing = [name for name in ("W", "b") if name not in tensors] + [
        k for k in ("sae", "layer") if k not in meta
    ]
    if missing:
        raise ModificationError(
            f"--modification_file {path} lacks {', '.join(missing)}: write it with "
            "lorasae.train.modification.save_modification_file (as eval/dark_matter/run.py does)."
        )
    return tensors, meta


def load_modification(
    cfg: ModificationSettings, d_model: int, device: torch.device | str = "cpu"
) -> HiddenModification:
    """The checked modification of a resolved config: the file exists and holds W [d, d] and b [d] with
    d = the model's d_model, it was fit at `cfg.layer` of this model, and its SAE reads d-dimensional
    activations. Runs before the language model loads (train_sae), so a wrong file fails in seconds."""
    from lorasae.model.load import model_key

    path = from_portable(str(cfg.modification_file))
    tensors, meta = _read(path)
    W, b = tensors["W"].float(), tensors["b"].float()
    problems = []
    if tuple(W.shape) != (d_model, d_model) or tuple(b.shape) != (d_model,):
        problems.append(
            f"it holds W {tuple(W.shape)} and b {tuple(b.shape)}, but the model's d_model is {d_model} "
            f"(expected W ({d_model}, {d_model}) and b ({d_model},))"
        )
    if int(meta["layer"]) != cfg.layer:
        problems.append(f"W* was fit at layer {meta['layer']}, but --layer is {cfg.layer}")
    if meta.get("model") and model_key(meta["model"]) != cfg.model_key:
        problems.append(f"W* was fit on model {meta['model']!r}, but this run trains on {cfg.model_name!r}")
    sae = None
    if not problems and cfg.hidden_modification in _NEEDS_SAE:
        sae = _load_sae(meta["sae"], d_model, device, path)
    if problems:
        raise ModificationError(f"--modification_file {path} does not fit this run: " + "; ".join(problems))
    skip = json.loads(meta.get("skip_special", "true"))
    empty = torch.zeros(0, dtype=torch.long)
    return HiddenModification(cfg.hidden_modification, W, b, sae, bool(skip), empty, meta).to(device)


def _load_sae(source: str, d_model: int, device: torch.device | str, path: Path) -> nn.Module:
    from lorasae.sae import load_sae

    try:
        sae = load_sae(source, device=device)
    except (OSError, ValueError) as err:
        raise ModificationError(
            f"--modification_file {path} names the SAE {source!r}, which does not load: {err}"
        ) from err
    d_in = int(sae.cfg.d_in)
    if d_in != d_model:
        raise ModificationError(
            f"--modification_file {path} names the SAE {source}, which reads {d_in}-dimensional activations, "
            f"but the model's d_model is {d_model}"
        )
    return sae.eval()
