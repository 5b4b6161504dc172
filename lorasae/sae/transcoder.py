"""Transcoders (Dunefsky, Chlenski, Nanda, arXiv 2406.11944) and skip transcoders (Paulo, Shabalin,
Belrose, arXiv 2501.18823): `--architecture transcoder` / `skip_transcoder`.

A transcoder reads the MLP's input x and reconstructs the MLP's output y:

    z = act(x W_enc + b_enc),   ŷ = z W_dec + b_dec  (+ x W_skipᵀ for a skip transcoder)

with ``act`` = ReLU (Dunefsky et al.; trained with the decoder-norm-weighted L1 in ``CoderOutput.l1``)
or TopK (Paulo et al., sparsify's transcoders; unit-norm decoder rows, AuxK). The encoder reads x
itself (no b_dec: it lives in the output space). ``W_skip`` [d_out, d_in] starts at zero.

Splicing: a transcoder replaces the MLP's output, not the residual stream: ``splice_site`` is
``"mlp"`` (``reconstruct(mlp_input)`` is the new MLP output), where the SAEs' is ``"resid"``.

On disk: a ReLU transcoder is SAELens's ``transcoder`` / ``skip_transcoder`` (``d_out``,
``apply_b_dec_to_input: false``, ``W_skip``; ``metadata.hook_name`` is the input hook and
``metadata.hook_name_out`` the output's), which ``sae_lens`` loads with equal outputs. SAELens has no
TopK transcoder, so a TopK one is written as ``topk_transcoder`` / ``topk_skip_transcoder`` (the same
tensors + ``k``), which only our loader reads. :func:`load_sparsify_transcoder` reads sparsify's
transcoder folders (``transcode: true``; ``sae.safetensors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lorasae.sae.attributes import DictionaryAttributes
from lorasae.sae.coder import CoderOutput, coder_cfg_dict, dense_indices, provenance
from lorasae.sae.config import dtype_name, to_torch_dtype
from lorasae.sae.fused_sae import fused_topk_sae
from lorasae.sae.io import CFG_FILENAME, SaeFormatError, read_cfg, read_weights, write_sae_folder
from lorasae.sae.kernels import sparse_decode, topk_encode

ACTIVATIONS = ("relu", "topk")
ON_DISK = {
    ("relu", False): "transcoder",
    ("relu", True): "skip_transcoder",
    ("topk", False): "topk_transcoder",
    ("topk", True): "topk_skip_transcoder",
}
DECODER_INIT_NORM = 0.1


@dataclass
class TranscoderConfig:
    d_in: int
    """Width of the MLP's input."""
    d_sae: int
    d_out: int | None = None
    """Width of the MLP's output (default d_in)."""
    activation: str = "relu"
    k: int | None = None
    """Active latents per token (TopK only)."""
    skip: bool = False
    """A linear skip term x W_skipᵀ (skip transcoder)."""
    model_name: str | None = None
    hook_layer: int | None = None
    """Decoder layer whose MLP it replaces."""
    hook_name: str | None = None
    """Hook of the MLP input (default ``blocks.L.ln2.hook_normalized``)."""
    hook_name_out: str | None = None
    """Hook of the MLP output (default ``blocks.L.hook_mlp_out``)."""
    dtype: str = "float32"
    skip_special_tokens: bool = False

    def __post_init__(self) -> None:
        self.d_out = self.d_in if self.d_out is None else self.d_out
        if min(self.d_in, self.d_sae, self.d_out) < 1:
            raise ValueError(
                f"TranscoderConfig needs positive d_in, d_sae, d_out (got {self.d_in}, {self.d_sae}, {self.d_out})"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"TranscoderConfig: activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )
        if self.activation == "topk" and not (self.k and 1 <= self.k <= self.d_sae):
            raise ValueError(
                f"TranscoderConfig: a TopK transcoder needs 1 <= k <= d_sae={self.d_sae}, got {self.k}"
            )
        if self.hook_layer is not None:
            self.hook_name = self.hook_name or f"blocks.{self.hook_layer}.ln2.hook_normalized"
            self.hook_name_out = self.hook_name_out or f"blocks.{self.hook_layer}.hook_mlp_out"
        self.dtype = dtype_name(to_torch_dtype(self.dtype))

    @property
    def architecture(self) -> str:
        return ON_DISK[(self.activation, self.skip)]


class Transcoder(DictionaryAttributes, nn.Module):
    """Parameters ``W_enc`` [d_in, d_sae], ``b_enc``, ``W_dec`` [d_sae, d_out], ``b_dec`` [d_out], and
    ``W_skip`` [d_out, d_in] for a skip transcoder."""

    splice_site = "mlp"

    def __init__(
        self, cfg: TranscoderConfig, device: torch.device | str | None = None, fast: bool = True
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.fast = fast  # TopK with d_in == d_out trains through the TopK SAE's fused kernel
        dt = to_torch_dtype(cfg.dtype)
        assert cfg.d_out is not None
        w = torch.randn(cfg.d_sae, cfg.d_out, device=device, dtype=dt)
        norm = 1.0 if cfg.activation == "topk" else DECODER_INIT_NORM
        self.W_dec = nn.Parameter(norm * w / w.norm(dim=1, keepdim=True))
        e = torch.randn(cfg.d_in, cfg.d_sae, device=device, dtype=dt)
        self.W_enc = nn.Parameter(DECODER_INIT_NORM * e / e.norm(dim=0, keepdim=True))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, device=device, dtype=dt))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_out, device=device, dtype=dt))
        self.W_skip = (
            nn.Parameter(torch.zeros(cfg.d_out, cfg.d_in, device=device, dtype=dt)) if cfg.skip else None
        )

    @property
    def fixed_l0(self) -> int | None:
        """k for a TopK transcoder (its latents per token); None for a ReLU one (measured)."""
        return self.cfg.k if self.cfg.activation == "topk" else None

    # ---- encode / decode ----------------------------------------------------------------------
    def encode_topk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(acts, idx): the k kept latents (TopK), or every latent with indices 0..d_sae-1 (ReLU)."""
        x = x.to(self.dtype)
        if self.cfg.activation == "topk":
            assert self.cfg.k is not None
            acts, idx, _ = topk_encode(x, self.W_enc.t(), self.b_enc, self.cfg.k)
            return acts, idx
        z = torch.relu(x @ self.W_enc + self.b_enc)
        return z, dense_indices(z)

    def encode(self, x: Tensor) -> Tensor:
        acts, idx = self.encode_topk(x)
        if self.cfg.activation == "relu":
            return acts
        return torch.zeros(*acts.shape[:-1], self.cfg.d_sae, dtype=acts.dtype, device=acts.device).scatter(
            -1, idx, acts
        )

    def decode(self, z: Tensor) -> Tensor:
        """z W_dec + b_dec (no skip term: that needs x; see ``reconstruct``)."""
        return z.to(self.dtype) @ self.W_dec + self.b_dec

    def decode_topk(self, acts: Tensor, idx: Tensor) -> Tensor:
        if self.cfg.activation == "relu":
            return self.decode(acts)
        return sparse_decode(acts.to(self.dtype), idx, self.W_dec) + self.b_dec

    def skip_term(self, x: Tensor) -> Tensor | None:
        return None if self.W_skip is None else x.to(self.dtype) @ self.W_skip.t()

    def reconstruct(self, x: Tensor) -> Tensor:
        """The predicted MLP output for MLP input x [..., d_in]."""
        out = self.decode_topk(*self.encode_topk(x))
        skip = self.skip_term(x)
        return out if skip is None else out + skip

    def forward(
        self, x: Tensor, dead_mask: Tensor | None = None, target: Tensor | None = None
    ) -> CoderOutput:
        """Predict ``target`` (the MLP output, [N, d_out]) from x (the MLP input, [N, d_in])."""
        if target is None:
            raise ValueError(
                "Transcoder.forward needs target= (the MLP output rows); pass (mlp_in, mlp_out) rows."
            )
        x = x.to(self.dtype).reshape(-1, self.cfg.d_in)
        y = target.to(self.dtype).reshape(-1, self.cfg.d_out)
        want_aux = dead_mask is not None and bool(dead_mask.any())
        if self.fast and self.cfg.activation == "topk" and not want_aux and self.cfg.d_in == self.cfg.d_out:
            # the TopK SAE's fused kernel; its decoder bias is subtracted from x, so pass zeros and add ours
            assert self.cfg.k is not None
            zero = x.new_zeros(self.cfg.d_in)
            y_hat, acts, idx = fused_topk_sae(x, zero, self.W_enc.t(), self.b_enc, self.W_dec, self.cfg.k)
            y_hat, pre, l1 = y_hat + self.b_dec, None, y_hat.new_zeros(())
        elif self.cfg.activation == "topk":
            assert self.cfg.k is not None
            acts, idx, pre = topk_encode(x, self.W_enc.t(), self.b_enc, self.cfg.k)
            y_hat = sparse_decode(acts, idx, self.W_dec) + self.b_dec
            l1 = y_hat.new_zeros(())
        else:
            acts = torch.relu(x @ self.W_enc + self.b_enc)
            idx, pre = dense_indices(acts), None
            y_hat = self.decode(acts)
            l1 = (acts * self.W_dec.norm(dim=1)).sum(-1).mean()
        skip = self.skip_term(x)
        if skip is not None:
            y_hat = y_hat + skip
        resid = y - y_hat
        total_var = (y - y.mean(0)).pow(2).sum()
        fvu = resid.pow(2).sum() / total_var
        auxk = y_hat.new_zeros(())
        if pre is not None and dead_mask is not None and bool(dead_mask.any()):
            auxk = _auxk(pre.relu(), resid, dead_mask, total_var, self.W_dec)
        return CoderOutput(y_hat, acts, idx, fvu, auxk, l1, fvu)

    # ---- the per-step constraints (TopK: unit-norm decoder rows, as the TopK SAE) ----------------
    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        if self.cfg.activation == "topk":
            self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True) + torch.finfo(self.W_dec.dtype).eps

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        if self.cfg.activation == "topk" and self.W_dec.grad is not None:
            self.W_dec.grad -= (self.W_dec.grad * self.W_dec.data).sum(1, keepdim=True) * self.W_dec.data

    def after_step(self, out: CoderOutput) -> None:
        """Nothing to update between steps."""

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, folder: str | Path, **extra: Any) -> Path:
        c = self.cfg
        fields: dict[str, Any] = {"d_out": c.d_out, "apply_b_dec_to_input": False}
        if c.activation == "topk":
            fields["k"] = c.k
        name = "skip_transcoder" if c.skip else "transcoder"
        cfg = coder_cfg_dict(
            c, self.dtype, c.architecture, name, fields=fields,
            metadata={"hook_name_out": c.hook_name_out}, extra={"activation": c.activation, **extra},
        )  # fmt: skip
        weights = {n: getattr(self, n).detach() for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
        if self.W_skip is not None:
            weights["W_skip"] = self.W_skip.detach()
        return write_sae_folder(folder, cfg, weights)

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu") -> Transcoder:
        """Ours, or a SAELens ``transcoder`` / ``skip_transcoder`` folder."""
        folder = Path(folder)
        raw = read_cfg(folder)
        where = folder / CFG_FILENAME
        kinds = {v: k for k, v in ON_DISK.items()}
        if raw.get("architecture") not in kinds or raw.get("normalize_activations") not in (
            None,
            "none",
            False,
        ):
            raise SaeFormatError(
                f"{where} is not a plain (skip) transcoder; load it with lorasae.sae.load_sae."
            )
        activation, skip = kinds[raw["architecture"]]
        meta = raw.get("metadata") or {}
        prov = provenance(raw)
        cfg = TranscoderConfig(
            d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]), d_out=int(raw.get("d_out", raw["d_in"])),
            activation=activation, k=raw.get("k"), skip=skip, hook_name_out=meta.get("hook_name_out"), **prov,
        )  # fmt: skip
        return transcoder_from_state(cfg, read_weights(folder), str(where)).to(device)


def transcoder_from_state(cfg: TranscoderConfig, weights: dict[str, Tensor], where: str) -> Transcoder:
    """A Transcoder holding ``weights`` (SAELens layout), with an error naming ``where`` on a mismatch."""
    names = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["W_skip"] if cfg.skip else [])
    sae = Transcoder(cfg, device="meta")
    try:
        sae.load_state_dict({n: weights[n] for n in names}, assign=True)
    except (KeyError, RuntimeError) as err:
        raise SaeFormatError(f"{where}: the weights do not match the config: {err!r}") from err
    sae.cfg.dtype = dtype_name(sae.W_dec.dtype)
    return sae


def load_sparsify_transcoder(
    folder: str | Path, raw: dict[str, Any], weights: dict[str, Tensor], hook_layer: int | None = None
) -> Transcoder:
    """A sparsify transcoder folder (``cfg.json`` with ``transcode: true``, tensors ``encoder.weight``,
    ``encoder.bias``, ``W_dec``, ``b_dec``, optional ``W_skip``) as a TopK Transcoder."""
    where = str(Path(folder) / "sae.safetensors")
    if raw.get("activation", "topk") != "topk":
        raise SaeFormatError(
            f"{where}: activation {raw.get('activation')!r} is not supported (TopK transcoders only)."
        )
    try:
        m, d = weights["encoder.weight"].shape
        state = {
            "W_enc": weights["encoder.weight"].t(),
            "b_enc": weights["encoder.bias"],
            "W_dec": weights["W_dec"],
            "b_dec": weights["b_dec"],
        }
    except KeyError as err:
        raise SaeFormatError(f"{where} lacks tensor {err}; re-download or re-save it.") from err
    if "W_skip" in weights:
        state["W_skip"] = weights["W_skip"]
    cfg = TranscoderConfig(
        d_in=int(d), d_sae=int(m), d_out=int(state["W_dec"].shape[1]), activation="topk", k=int(raw["k"]),
        skip="W_skip" in weights, dtype=dtype_name(state["W_dec"].dtype), hook_layer=hook_layer,
    )  # fmt: skip
    return transcoder_from_state(cfg, state, where)


def _auxk(pre: Tensor, resid: Tensor, dead_mask: Tensor, total_var: Tensor, W_dec: Tensor) -> Tensor:
    """Gao et al.'s AuxK (as the TopK SAE's): the top k_aux = d_out // 2 dead latents reconstruct the residual."""
    num_dead = int(dead_mask.sum())
    k_aux = max(resid.shape[-1] // 2, 1)
    scale = min(num_dead / k_aux, 1.0)
    masked = pre.masked_fill(~dead_mask.to(torch.bool), float("-inf"))
    acts, idx = masked.topk(min(k_aux, num_dead), dim=-1, sorted=False)
    return scale * (sparse_decode(acts, idx, W_dec) - resid.detach()).pow(2).sum() / total_var


__all__ = ["Transcoder", "TranscoderConfig", "load_sparsify_transcoder", "transcoder_from_state"]
