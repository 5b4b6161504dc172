"""Crosscoder: one sparse dictionary over several activation sources (layers of one model, or the same
layer of several models / checkpoints), as in Lindsey et al. (2024) and the seed's CrossCoderSAE.

Each source s has its own encoder ``W_enc[s]`` [d_in_s, m], decoder ``W_dec[s]`` [m, d_in_s] and decoder
bias ``b_dec[s]``; the m latents and the encoder bias ``b_enc`` are shared:

    pre   = Σ_s (x_s − b_dec[s]) W_enc[s] + b_enc
    z     = TopK(ReLU(pre))              (activation "topk")   or   ReLU(pre)   (activation "relu")
    x̂_s   = z W_dec[s] + b_dec[s]

The loss is the sum over sources of each source's FVU; the ReLU variant adds the L1 penalty weighted by
the summed decoder norms, Σ_i z_i Σ_s ‖W_dec[s]_i‖ (Anthropic's crosscoder loss; it does not reward
shrinking one source's decoder to inflate z). A latent's decoder norms per source (`decoder_norms()`)
say which sources it writes to: the cross-model analysis ranks latents by them.

On disk (our loader, `Crosscoder.load`; sae_lens has no crosscoder architecture): a folder with
``cfg.json`` (``architecture: "crosscoder"``, ``d_in`` as a list, ``d_sae``, ``k``, ``activation``,
``sources``, ``metadata``) and ``sae_weights.safetensors`` with ``W_enc.<s>``, ``W_dec.<s>``,
``b_dec.<s>`` per source and the shared ``b_enc``, in SAELens's layouts; written atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from lorasae.core.atomic import atomic_dir
from lorasae.core.losses import fvu
from lorasae.sae.io import CFG_FILENAME, WEIGHTS_FILENAME, SaeFormatError, read_cfg, read_weights
from lorasae.sae.topk import dtype_name, to_torch_dtype

ACTIVATIONS = ("topk", "relu")


@dataclass
class CrosscoderConfig:
    """Shape and provenance of a crosscoder (what goes into cfg.json)."""

    d_in: list[int]
    """Width of each source's activations (one entry per source)."""
    d_sae: int
    """Number of shared latents m."""
    k: int | None = None
    """Active latents per token for activation "topk"."""
    activation: str = "topk"
    """topk (TopK over the summed pre-activations) or relu (ReLU + decoder-norm-weighted L1)."""
    sources: list[str] = field(default_factory=list)
    """A name per source, e.g. ["pre/layer0", "post/layer0"] (default: "0", "1", ...)."""
    model_names: list[str | None] = field(default_factory=list)
    """Model (or checkpoint) of each source, for provenance."""
    hook_layers: list[int | None] = field(default_factory=list)
    """Decoder layer of each source (the residual stream after it)."""
    dtype: str = "float32"

    def __post_init__(self) -> None:
        n = len(self.d_in)
        if n < 1 or min(self.d_in) < 1 or self.d_sae < 1:
            raise ValueError(
                f"a crosscoder needs ≥ 1 source and positive widths (d_in={self.d_in}, d_sae={self.d_sae})"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.activation == "topk" and not (self.k and 1 <= self.k <= self.d_sae):
            raise ValueError(f"a topk crosscoder needs 1 ≤ k ≤ d_sae={self.d_sae}, got k={self.k}")
        self.sources = list(self.sources) or [str(s) for s in range(n)]
        self.model_names = list(self.model_names) or [None] * n
        self.hook_layers = list(self.hook_layers) or [None] * n
        for name in ("sources", "model_names", "hook_layers"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} sources")
        self.dtype = dtype_name(to_torch_dtype(self.dtype))

    @property
    def n_sources(self) -> int:
        return len(self.d_in)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CrosscoderConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{key: val for key, val in d.items() if key in names})


class CrosscoderOutput(NamedTuple):
    x_hat: list[Tensor]
    """Reconstruction of each source."""
    z: Tensor
    """Dense latents [N, d_sae] (zero outside the active ones)."""
    fvu: Tensor
    """FVU of each source, [n_sources]."""
    loss: Tensor
    """Σ_s FVU_s (+ sparsity_coef · decoder-norm-weighted L1 for activation relu)."""


class Crosscoder(nn.Module):
    """A crosscoder over `cfg.n_sources` sources; `forward(xs)` takes a list of [N, d_in_s] tensors."""

    def __init__(self, cfg: CrosscoderConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        dt = to_torch_dtype(cfg.dtype)
        m = cfg.d_sae
        dec = [torch.randn(m, d, device=device, dtype=dt) for d in cfg.d_in]
        self.W_dec = nn.ParameterList([nn.Parameter(w) for w in dec])
        self.set_decoder_norm_to_unit_norm()
        self.W_enc = nn.ParameterList([nn.Parameter(w.detach().t().clone()) for w in self.W_dec])
        self.b_enc = nn.Parameter(torch.zeros(m, device=device, dtype=dt))
        self.b_dec = nn.ParameterList(
            [nn.Parameter(torch.zeros(d, device=device, dtype=dt)) for d in cfg.d_in]
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.W_dec[0].dtype

    @property
    def fixed_l0(self) -> int | None:
        """k for a TopK crosscoder (its latents per token); None for a ReLU one (measured)."""
        return self.cfg.k if self.cfg.activation == "topk" else None

    def _check(self, xs: list[Tensor]) -> None:
        if len(xs) != self.cfg.n_sources:
            raise ValueError(f"expected {self.cfg.n_sources} sources, got {len(xs)}")
        for s, (x, d) in enumerate(zip(xs, self.cfg.d_in)):
            if x.shape[-1] != d:
                raise ValueError(f"source {s} ({self.cfg.sources[s]}) has width {x.shape[-1]}, expected {d}")

    def pre_acts(self, xs: list[Tensor]) -> Tensor:
        """Σ_s (x_s − b_dec[s]) W_enc[s] + b_enc, [N, d_sae]."""
        self._check(xs)
        pre = self.b_enc
        for x, w, b in zip(xs, self.W_enc, self.b_dec):
            pre = pre + (x.to(self.dtype) - b) @ w
        return pre

    def encode(self, xs: list[Tensor]) -> Tensor:
        """Dense latents [N, d_sae]: TopK of ReLU(pre) (topk) or ReLU(pre) (relu)."""
        z = self.pre_acts(xs).relu()
        if self.cfg.activation == "relu":
            return z
        vals, idx = z.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(z).scatter(-1, idx, vals)

    def decode(self, z: Tensor) -> list[Tensor]:
        """Reconstruction of each source from latents z [N, d_sae]."""
        return [z.to(self.dtype) @ w + b for w, b in zip(self.W_dec, self.b_dec)]

    def reconstruct(self, xs: list[Tensor]) -> list[Tensor]:
        return self.decode(self.encode(xs))

    def decoder_norms(self) -> Tensor:
        """‖W_dec[s]_i‖ for each source s and latent i, [n_sources, d_sae]."""
        return torch.stack([w.norm(dim=1) for w in self.W_dec])

    def sparsity_loss(self, z: Tensor) -> Tensor:
        """Mean over tokens of Σ_i z_i Σ_s ‖W_dec[s]_i‖."""
        return (z * self.decoder_norms().sum(0)).sum(-1).mean()

    def forward(self, xs: list[Tensor], sparsity_coef: float = 0.0) -> CrosscoderOutput:
        z = self.encode(xs)
        x_hat = self.decode(z)
        per_source = torch.stack([fvu(x, xh) for x, xh in zip(xs, x_hat)])
        loss = per_source.sum()
        if self.cfg.activation == "relu" and sparsity_coef > 0:
            loss = loss + sparsity_coef * self.sparsity_loss(z)
        return CrosscoderOutput(x_hat, z, per_source, loss)

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        """Scale each latent's decoder rows so that they have joint norm 1 over all sources (TopK
        training's constraint; the ReLU variant's L1 is weighted by the norms instead)."""
        joint = torch.stack([w.pow(2).sum(1) for w in self.W_dec]).sum(0).sqrt()
        eps = torch.finfo(self.dtype).eps
        for w in self.W_dec:
            w.data /= joint.unsqueeze(1) + eps

    # ---- persistence --------------------------------------------------------------------------------
    def save(self, folder: str | Path, **extra: Any) -> Path:
        """Write cfg.json + sae_weights.safetensors into `folder` (atomically); `extra` → metadata."""
        folder = Path(folder)
        cfg = {
            "architecture": "crosscoder",
            **{k: v for k, v in self.cfg.to_dict().items() if k not in ("model_names", "hook_layers")},
            "dtype": dtype_name(self.dtype),
            "metadata": {
                "model_names": self.cfg.model_names,
                "hook_layers": self.cfg.hook_layers,
                "lorasae": {"format": 1, **extra},
            },
        }
        weights = {"b_enc": self.b_enc}
        for s in range(self.cfg.n_sources):
            weights |= {f"W_enc.{s}": self.W_enc[s], f"W_dec.{s}": self.W_dec[s], f"b_dec.{s}": self.b_dec[s]}
        weights = {name: w.detach().to("cpu").contiguous() for name, w in weights.items()}
        with atomic_dir(folder) as tmp:
            save_file(weights, str(tmp / WEIGHTS_FILENAME))
            (tmp / CFG_FILENAME).write_text(json.dumps(cfg, indent=2, default=str) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu") -> Crosscoder:
        folder = Path(folder)
        raw = read_cfg(folder)
        if raw.get("architecture") != "crosscoder":
            raise SaeFormatError(
                f"{folder / CFG_FILENAME} is not a crosscoder (architecture {raw.get('architecture')!r})"
            )
        meta = raw.get("metadata") or {}
        cfg = CrosscoderConfig.from_dict(
            {
                **raw,
                "model_names": meta.get("model_names") or [],
                "hook_layers": meta.get("hook_layers") or [],
            }
        )
        weights = read_weights(folder)
        coder = cls(cfg, device="meta")
        state = {"b_enc": weights.get("b_enc")}
        for s in range(cfg.n_sources):
            for name in ("W_enc", "W_dec", "b_dec"):
                state[f"{name}.{s}"] = weights.get(f"{name}.{s}")
        missing = sorted(name for name, w in state.items() if w is None)
        if missing:
            raise SaeFormatError(f"{folder / WEIGHTS_FILENAME} lacks tensors {missing}")
        try:
            coder.load_state_dict(state, assign=True)
        except RuntimeError as err:
            raise SaeFormatError(f"{folder / WEIGHTS_FILENAME} does not match its cfg.json: {err}") from err
        return coder.to(device)
