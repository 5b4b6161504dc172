"""SAEs trained on the error components (Engels et al. Fig. 8): one TopK SAE on the linear error
x·W* + b, one on the nonlinear error e − x·W* − b, each scored by its FVU on held-out tokens. The paper
finds the linear part more learnable (its SAE latents are features like the model's); a nonlinear error
that is dense noise leaves an SAE of the same size with a much higher FVU.

They train through `train_sae(TrainSaeConfig(...))`, the entry of `train_sae.py`, with a hidden-modification
target (`lorasae/train/modification.py`): W*, b and the SAE go into
`data/dark_matter/<model>/linear_maps/<key>.safetensors`, and the error SAEs train on the model's
activations of the training split after the Dark Matter token region (train_sae's validation chunks are
the stream up to the region's end: `num_val_tokens = after_chunks · ctx_len`), so neither W* nor the
SAEInfo ever saw their training tokens. The held-out FVU is computed on the SAEInfo's held-out rows (the
tokens W* was not fit on); train_sae's own validation FVU is kept next to it, on the first
`VAL_TOKENS` = 8,192 tokens of the stream (`--final_val_tokens`: whole chunks, 64 of the built-in
model's 128 tokens, 8 of 1024). Those tokens precede the region, so W* never saw them either; the
statistics over the whole stream up to the region's end (~360k tokens in the demo) cost each run a model
forward over every one of them for a secondary number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lorasae.core.losses import fvu
from lorasae.darkmatter.info import SAEInfo
from lorasae.darkmatter.linear import LinearMap, split_error, train_test_rows
from lorasae.model.defaults import PAPER_CTX_LEN
from lorasae.sae import TopKSAE
from lorasae.train.config import TrainSaeConfig
from lorasae.train.modification import save_modification_file

TARGETS = {"linear": "linear_error", "nonlinear": "nonlinear_error"}
"""Error component -> `--hidden_modification`."""

CURVE_VAL_TOKENS = 2048  # the curve's two points (before/after): the held-out FVU is computed separately
VAL_TOKENS = 8192  # train_sae's final statistics (val_fvu): the first chunks of the stream


@dataclass
class ErrorSaeResult:
    target: str
    width: int
    k: int
    train_fvu: float
    """Mean training FVU over the last tenth of the steps."""
    test_fvu: float
    """FVU on the SAEInfo's held-out rows (the tokens W* was not fit on)."""
    val_fvu: float
    """train_sae's validation FVU on f(x) over the first `val_tokens` tokens of the stream."""
    val_tokens: int
    """Positions of `val_fvu`'s chunks (whole chunks; special positions skipped, as in training)."""
    folder: str
    """Where train_sae saved it (saved_saes/<model>/modified/...)."""


def write_linear_map(path: Path, lin: LinearMap, info: SAEInfo, sae_source: str, model_name: str) -> Path:
    """W*, b of `info` and the SAE they split, as `train_sae.py --modification_file` reads them (special
    positions left out: the SAEInfo leaves them out)."""
    return save_modification_file(path, lin.W, lin.b, sae_source, int(info.meta["layer"]), model_name, True)


def heldout_components(
    info: SAEInfo, lin: LinearMap, train_fraction: float, split: str = "random", seed: int = 0
) -> dict[str, Tensor]:
    """The linear and nonlinear error of the SAEInfo's held-out rows (`train_test_rows(split, seed)`)."""
    _, test = train_test_rows(len(info), train_fraction, split, seed)
    split = split_error(info.x[test], info.error[test], lin)
    return {"linear": split.linear, "nonlinear": split.nonlinear}


def train_error_saes(
    model_name: str,
    map_file: Path,
    info: SAEInfo,
    lin: LinearMap,
    expansions: list[int],
    k: int,
    steps: int,
    train_fraction: float,
    dataset: str | None = None,
    device: str = "cpu",
    seed: int = 42,
    split: str = "random",
    after_chunks: int | None = None,
    val_tokens: int | None = VAL_TOKENS,
) -> list[ErrorSaeResult]:
    """One SAE per (component, expansion) through train_sae, `steps` steps of 1024 tokens on the chunks
    after the first `after_chunks` of the stream (default: the SAEInfo's `num_chunks`; the runs'
    validation set), so none of the analysed tokens is a training token. Their `val_fvu` is on the first
    `val_tokens` tokens of the stream (None: all `after_chunks`)."""
    from lorasae.train.sae_trainer import train_sae

    heldout = heldout_components(info, lin, train_fraction, split, seed)
    after_chunks = int(info.meta["num_chunks"]) if after_chunks is None else after_chunks
    ctx_len = int(info.meta["ctx_len"])
    val_chunks = after_chunks if val_tokens is None else min(after_chunks, -(-val_tokens // ctx_len))
    results = []
    for name, modification in TARGETS.items():
        for expansion in expansions:
            cfg = TrainSaeConfig(
                device=device, model=model_name, dataset=dataset, seed=seed, layer=int(info.meta["layer"]),
                num_train_tokens=steps * PAPER_CTX_LEN, ctx_len=ctx_len,
                num_val_tokens=after_chunks * ctx_len, curve_val_tokens=CURVE_VAL_TOKENS,
                final_val_tokens=val_tokens, expansion_factor=expansion, k=k,
                hidden_modification=modification,
                modification_file=str(map_file), eval_every_pct=100,
                checkpoint_every_pct=100, log_every_steps=max(1, steps // 10), overwrite=True,
            )  # fmt: skip
            result = train_sae(cfg)
            sae = TopKSAE.load(result.final_dir, device=device)
            with torch.no_grad():
                target = heldout[name].to(device)
                test_fvu = float(fvu(target, sae.reconstruct(target)))
            width = sae.cfg.d_sae
            results.append(
                ErrorSaeResult(
                    name,
                    width,
                    k,
                    result.train_metrics.get("fvu", float("nan")),
                    test_fvu,
                    result.val_fvu,
                    val_chunks * ctx_len,
                    str(result.final_dir),
                )  # fmt: skip
            )
    return results
