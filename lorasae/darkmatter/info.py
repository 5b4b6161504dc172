"""`SAEInfo`: what an SAE does on N tokens of a dataset, built once and cached in one safetensors file.

The record holds, per analysed token (special positions such as BOS/EOS are left out: their activations
are outliers that no SAE is trained to reconstruct): the activation x, the reconstruction x̂, the SAE
latents (sparse: CSR `indptr` / `indices` / `values`, so a 1m-wide SAE at L0 60 costs 60 entries a
token), the token id, its chunk and position, and the model's next-token loss there (NaN at the last
position of a chunk). Everything else is derived: error e = x − x̂ (SPEC §7's sign; the original used
x̂ − x), L0, norms, latent frequencies.

    info = build_sae_info(model, sae, chunks, layer=1, special_ids=[1, 2])
    info.save(path); info = SAEInfo.load(path)
    info.error, info.l0, info.error_norm, info.latent_frequency, info.dense_latents(0, 100)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from lorasae.core.atomic import atomic_save_file
from lorasae.core.losses import fvu
from lorasae.model.hooks import splice

_TENSORS = ("x", "x_hat", "indptr", "indices", "values", "token_ids", "chunk", "position", "loss")
_ENCODE_ELEMENTS = 2**25  # dense latents per encode call (a 1m-wide SAE: 32 tokens at a time)


@dataclass
class SAEInfo:
    """Per-token record of one SAE on one model and token set (see the module docstring)."""

    x: Tensor
    """Activations [N, d] (float32)."""
    x_hat: Tensor
    """SAE reconstructions [N, d]."""
    indptr: Tensor
    """CSR row pointers [N+1] (int64): token i's latents are indices/values[indptr[i]:indptr[i+1]]."""
    indices: Tensor
    """Active latent ids [nnz] (int32)."""
    values: Tensor
    """Active latent values [nnz] (float32)."""
    token_ids: Tensor
    """Token id at each analysed position [N]."""
    chunk: Tensor
    """Chunk (row of the token set) of each analysed position [N]."""
    position: Tensor
    """Position within its chunk [N]."""
    loss: Tensor
    """Model's next-token CE (nats) at each position [N]; NaN where no next token exists."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Provenance: model, sae source, layer, d_sae, adapter, dataset, number of chunks, ..."""

    # --- derived --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def error(self) -> Tensor:
        """e = x − x̂ [N, d]."""
        return self.x - self.x_hat

    @property
    def l0(self) -> Tensor:
        """Active latents per token [N] (nonzero values)."""
        nonzero = (self.values != 0).to(torch.int64)
        cum = torch.cat([torch.zeros(1, dtype=torch.int64), nonzero.cumsum(0)])
        return cum[self.indptr[1:]] - cum[self.indptr[:-1]]

    @property
    def x_norm(self) -> Tensor:
        return self.x.norm(dim=-1)

    @property
    def error_norm(self) -> Tensor:
        return self.error.norm(dim=-1)

    @property
    def d_sae(self) -> int:
        return int(self.meta["d_sae"])

    @property
    def latent_frequency(self) -> Tensor:
        """Fraction of tokens on which each latent fires [d_sae]."""
        counts = torch.bincount(self.indices[self.values != 0].long(), minlength=self.d_sae)
        return counts.double() / max(len(self), 1)

    @property
    def fvu(self) -> float:
        """FVU of the reconstruction over all analysed tokens."""
        return float(fvu(self.x, self.x_hat))

    def dense_latents(self, start: int = 0, stop: int | None = None) -> Tensor:
        """Dense latents [stop − start, d_sae] of tokens start…stop (keep the slice small for wide SAEs)."""
        stop = len(self) if stop is None else stop
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        rows = torch.repeat_interleave(
            torch.arange(stop - start), self.indptr[start + 1 : stop + 1] - self.indptr[start:stop]
        )
        dense = torch.zeros(stop - start, self.d_sae)
        dense[rows, self.indices[lo:hi].long()] = self.values[lo:hi]
        return dense

    def subset(self, rows: Tensor) -> SAEInfo:
        """The record restricted to the given token rows (a bool mask or sorted indices)."""
        rows = torch.nonzero(rows).squeeze(1) if rows.dtype == torch.bool else rows
        counts = self.indptr[rows + 1] - self.indptr[rows]
        starts = torch.repeat_interleave(self.indptr[rows], counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        flat = starts + offsets
        return SAEInfo(
            x=self.x[rows], x_hat=self.x_hat[rows],
            indptr=torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]),
            indices=self.indices[flat], values=self.values[flat],
            token_ids=self.token_ids[rows], chunk=self.chunk[rows], position=self.position[rows],
            loss=self.loss[rows], meta=dict(self.meta),
        )  # fmt: skip

    # --- storage --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """One safetensors file (atomic), `meta` as JSON in its metadata."""
        tensors = {name: getattr(self, name).contiguous() for name in _TENSORS}
        metadata = {"meta": json.dumps(self.meta, sort_keys=True, default=str)}
        return atomic_save_file(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | Path) -> SAEInfo:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        tensors = load_file(str(path))
        return cls(**{name: tensors[name] for name in _TENSORS}, meta=meta)

    @classmethod
    def from_arrays(cls, x: Tensor, x_hat: Tensor, latents: Tensor | None = None, **meta: Any) -> SAEInfo:
        """A record from given activations and reconstructions (synthetic data, tests); `latents` dense
        [N, d_sae] if known. Token ids, chunks and positions are 0…N−1, loss NaN."""
        n = x.shape[0]
        if latents is None:
            latents = torch.zeros(n, 1)
        indptr, indices, values = _to_csr(latents.float())
        arange = torch.arange(n)
        meta.setdefault("d_sae", latents.shape[1])
        return cls(
            x.float(), x_hat.float(), indptr, indices, values, arange, arange.int(), torch.zeros(n, dtype=torch.int32),
            torch.full((n,), float("nan")), meta,
        )  # fmt: skip


def _to_csr(dense: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    mask = dense != 0
    counts = mask.sum(1).to(torch.int64)
    indptr = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]).cpu()
    rows, cols = torch.nonzero(mask, as_tuple=True)  # row-major order: CSR order
    return indptr, cols.to(torch.int32).cpu(), dense[rows, cols].float().cpu()


def _encode_sparse(sae: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x̂, indptr, indices, values) of activations x [n, d]: TopK SAEs through their sparse path, any
    other SAE through dense latents a few tokens at a time."""
    w = sae.W_dec  # type: ignore[attr-defined]
    x = x.to(device=w.device, dtype=w.dtype)
    if hasattr(sae, "encode_topk") and hasattr(sae, "decode_topk"):
        acts, idx = sae.encode_topk(x)  # type: ignore[operator]
        x_hat = sae.decode_topk(acts, idx)  # type: ignore[operator]
        order = idx.argsort(dim=-1)
        acts, idx = acts.gather(-1, order), idx.gather(-1, order)
        keep = acts != 0
        counts = keep.sum(1).to(torch.int64)
        indptr = torch.cat([torch.zeros(1, dtype=torch.int64, device=x.device), counts.cumsum(0)])
        return x_hat.float(), indptr.cpu(), idx[keep].to(torch.int32).cpu(), acts[keep].float().cpu()
    step = max(1, _ENCODE_ELEMENTS // int(w.shape[0]))
    parts, x_hats = [], []
    for start in range(0, len(x), step):
        z = sae.encode(x[start : start + step])  # type: ignore[operator]
        x_hats.append(sae.decode(z).float())  # type: ignore[operator]
        parts.append(_to_csr(z))
    offsets = torch.tensor([0] + [int(p[0][-1]) for p in parts]).cumsum(0)
    indptr = torch.cat([parts[0][0][:1]] + [p[0][1:] + off for p, off in zip(parts, offsets[:-1])])
    return torch.cat(x_hats), indptr, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


def _forward_rows(model: nn.Module, ids: Tensor, keep: Tensor, layer: int, device) -> tuple[Tensor, Tensor]:
    """(layer `layer`'s output, next-token loss) at the `keep` positions of `ids`, from one forward."""
    captured: list[Tensor] = []

    def capture(h: Tensor) -> Tensor:
        captured.append(h.detach())
        return h

    with splice(model, {layer: capture}):
        logits = model(input_ids=ids.to(device), use_cache=False).logits
    loss = torch.full(ids.shape, float("nan"))
    loss[:, :-1] = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1).to(device), reduction="none"
    ).reshape(ids.shape[0], -1).cpu()  # fmt: skip
    return captured[0][keep.to(captured[0].device)].float(), loss[keep]


def _clean_rows(clean: SAEInfo, kept_ids: Tensor, offset: int) -> tuple[Tensor, Tensor]:
    """`_forward_rows`'s answer for the batch whose kept tokens are `kept_ids`, read from `clean` at row
    `offset` (a fresh copy: the SAE encodes the same tensor as after a forward)."""
    rows = slice(offset, offset + len(kept_ids))
    if not torch.equal(clean.token_ids[rows], kept_ids):
        raise ValueError(
            "lorasae/darkmatter/info.py: `clean` holds other tokens; build it on the same chunks"
        )
    return clean.x[rows].clone(), clean.loss[rows]


@torch.no_grad()
def build_sae_info(
    model: nn.Module,
    sae: nn.Module,
    chunks: Tensor,
    layer: int,
    special_ids: list[int] | tuple[int, ...] = (),
    batch_size: int = 8,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    clean: SAEInfo | None = None,
) -> SAEInfo:
    """Run the model over `chunks` [n, T] once, reading layer `layer`'s output (through `hooks.splice`
    with the identity, so the forward is the project's) and the logits for the per-token loss; encode
    each non-special position with the SAE. `clean`: an SAEInfo of the same model, layer, chunks and
    special ids (another SAE's): its activations and losses are taken instead of running the model
    again, batch by batch as the forward gives them, so the record is the same bit for bit."""
    device = next(model.parameters()).device
    special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
    parts: dict[str, list[Tensor]] = {name: [] for name in _TENSORS}
    nnz = offset = 0
    for start in tqdm(range(0, len(chunks), batch_size), desc="SAEInfo", disable=not progress, leave=False):
        ids = chunks[start : start + batch_size]
        keep = ~torch.isin(ids, special)
        if clean is not None:
            x, kept_loss = _clean_rows(clean, ids[keep], offset)
        else:
            x, kept_loss = _forward_rows(model, ids, keep, layer, device)
        offset += len(x)
        x_hat, indptr, indices, values = _encode_sparse(sae, x)
        rows, cols = torch.nonzero(keep, as_tuple=True)
        parts["x"].append(x.cpu())
        parts["x_hat"].append(x_hat.cpu())
        parts["indptr"].append(indptr[1:] + nnz if parts["indptr"] else indptr)
        nnz += int(indptr[-1])
        parts["indices"].append(indices)
        parts["values"].append(values)
        parts["token_ids"].append(ids[keep])
        parts["chunk"].append((rows + start).to(torch.int32))
        parts["position"].append(cols.to(torch.int32))
        parts["loss"].append(kept_loss)
    if clean is not None and offset != len(clean):
        raise ValueError(
            "lorasae/darkmatter/info.py: `clean` holds other tokens; build it on the same chunks"
        )
    cfg = getattr(sae, "cfg", None)
    info_meta = {"layer": layer, "d_sae": int(sae.W_dec.shape[0]), "num_chunks": len(chunks)}  # type: ignore[attr-defined]
    info_meta["ctx_len"] = int(chunks.shape[1])
    if cfg is not None and getattr(cfg, "k", None):
        info_meta["k"] = int(cfg.k)
    info_meta.update(meta or {})
    return SAEInfo(**{name: torch.cat(parts[name]) for name in _TENSORS}, meta=info_meta)
