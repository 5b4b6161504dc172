"""Figures of the grokking study (the seed's viz_*.ipynb), one function each, written as
`plots/grok_<run>_<what>.{png,pdf}` with lorasae.plotting's headless helpers. `inputs`: the run's files the
figure's numbers come from (curves, summaries, checkpoint states, model and SAE weights and configs, as
`lorasae.grok.study` lists them), named by each figure's run record."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from lorasae.grok.experiments import ClampResult
from lorasae.grok_world.train import Curves
from lorasae.plotting._common import new_figure, save_figure


def _stem(run: str, what: str) -> str:
    return f"grok_{run}_{what}"


def plot_accuracy(
    curves: Curves, run: str, out_dir: Path, marks: dict[str, int], inputs: Sequence[Path] = ()
) -> Path:
    """Train/test accuracy (and loss, log scale) against step; vertical lines at `marks` {label: step}."""
    fig, (acc, loss) = new_figure(1, 2, figsize=(10, 3.6))
    acc.plot(curves.step, curves.train_acc, label="train")
    acc.plot(curves.step, curves.test_acc, label="test")
    loss.semilogy(curves.step, curves.train_loss, label="train")
    loss.semilogy(curves.step, curves.test_loss, label="test")
    for ax in (acc, loss):
        for (label, step), color in zip(marks.items(), ("tab:gray", "tab:red", "tab:green")):
            ax.axvline(step, color=color, ls="--", lw=1, label=f"{label} (step {step})")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    acc.set_ylabel("accuracy")
    loss.set_ylabel("cross-entropy")
    fig.suptitle(f"Grokking: {run}")
    return save_figure(fig, out_dir, _stem(run, "accuracy"), inputs)[0]


def plot_latent_grid(
    z_pre: Tensor,
    z_post: Tensor,
    latents: list[int],
    prime: int,
    run: str,
    out_dir: Path,
    inputs: Sequence[Path] = (),
) -> Path:
    """Activation of each latent over the (a, b) grid, on the pre- (top row) and post-generalization
    (bottom row) activations; z_* are [p·p, d_sae] in row-major (a, b) order."""
    fig, axes = new_figure(2, len(latents), figsize=(2.6 * len(latents), 5.2), squeeze=False)
    for col, i in enumerate(latents):
        vmax = float(max(z_pre[:, i].max(), z_post[:, i].max(), 1e-6))
        for row, (z, label) in enumerate(((z_pre, "pre"), (z_post, "post"))):
            ax = axes[row][col]
            ax.imshow(
                z[:, i].reshape(prime, prime).numpy(), origin="lower", vmin=0, vmax=vmax, cmap="viridis"
            )
            ax.set_title(f"latent {i} ({label})", fontsize=8)
            ax.set_xlabel("b", fontsize=7)
            ax.set_ylabel("a", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle("Latent activation over the (a, b) grid: pre- vs post-generalization")
    return save_figure(fig, out_dir, _stem(run, "latent_grid"), inputs)[0]


def plot_attribution(
    attr: Tensor,
    input_ids: Tensor,
    latents: list[int],
    prime: int,
    run: str,
    out_dir: Path,
    inputs: Sequence[Path] = (),
) -> Path:
    """Top: mean |attribution| to the a, b and "=" tokens per latent. Bottom: mean attribution to the a
    token as a function of a's value, and to the b token as a function of b's value."""
    fig, (bars, lines) = new_figure(1, 2, figsize=(11, 3.6))
    share = attr.abs().mean(1).numpy()  # [latents, T]
    width = 0.8 / len(latents)
    for j, i in enumerate(latents):
        bars.bar(np.arange(3) + j * width, share[j], width, label=f"latent {i}")
    bars.set_xticks(np.arange(3) + 0.4 - width / 2, ["a", "b", "="])
    bars.set_ylabel("mean |grad × embedding|")
    bars.legend(fontsize=7)
    for j, i in enumerate(latents[:2]):
        for pos, ls in ((0, "-"), (1, ":")):
            values = input_ids[:, pos].numpy()
            mean = np.bincount(values, weights=attr[j, :, pos].numpy(), minlength=prime) / np.maximum(
                np.bincount(values, minlength=prime), 1
            )
            lines.plot(np.arange(prime), mean, ls=ls, label=f"latent {i}, token {'ab'[pos]}")
    lines.set_xlabel("token value")
    lines.set_ylabel("mean attribution")
    lines.legend(fontsize=7)
    fig.suptitle("Attribution of latents to the input tokens (post-generalization model)")
    return save_figure(fig, out_dir, _stem(run, "attribution"), inputs)[0]


def plot_embedding(
    points: dict[str, np.ndarray],
    colors: np.ndarray,
    method: str,
    run: str,
    out_dir: Path,
    inputs: Sequence[Path] = (),
) -> Path:
    """2-D embeddings {label: [n, 2]} of the latent codes, coloured by the answer c."""
    fig, axes = new_figure(1, len(points), figsize=(5 * len(points), 4.4), squeeze=False)
    for ax, (label, xy) in zip(axes[0], points.items()):
        im = ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=3, cmap="hsv")
        ax.set_title(f"{method} of SAE latents: {label}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), label="answer c")
    return save_figure(fig, out_dir, _stem(run, f"latents_{method.lower()}"), inputs)[0]


def plot_relative_norms(rel: Tensor, run: str, out_dir: Path, inputs: Sequence[Path] = ()) -> Path:
    """Histogram of the crosscoder latents' relative decoder norm (0: pre-only, 1: post-only)."""
    fig, ax = new_figure(figsize=(5.5, 3.6))
    ax.hist(rel.numpy(), bins=40, range=(0, 1), color="tab:purple")
    ax.set_xlabel("‖W_dec post‖ / (‖W_dec pre‖ + ‖W_dec post‖)")
    ax.set_ylabel("latents")
    ax.set_title("Crosscoder across the pre- and post-generalization checkpoints", fontsize=9)
    return save_figure(fig, out_dir, _stem(run, "crosscoder_norms"), inputs)[0]


def plot_clamp(
    results: list[ClampResult], baseline: Curves, run: str, out_dir: Path, inputs: Sequence[Path] = ()
) -> Path:
    """Test accuracy while training continues from the pre-generalization checkpoint: unclamped run,
    targeted latents clamped, random latents clamped (one thin line per seed)."""
    fig, ax = new_figure(figsize=(6.5, 4))
    start, end = results[0].curves.step[0], results[0].curves.step[-1]
    keep = [j for j, s in enumerate(baseline.step) if start <= s <= end]
    ax.plot(
        [baseline.step[j] for j in keep], [baseline.test_acc[j] for j in keep], color="k", label="no clamp"
    )
    for r in results:
        if r.condition == "none":
            continue
        color, label = (
            ("tab:red", "targeted") if r.condition == "targeted" else ("tab:blue", f"random (seed {r.seed})")
        )
        ax.plot(
            r.curves.step,
            r.curves.test_acc,
            color=color,
            lw=2 if r.condition == "targeted" else 1,
            alpha=0.9,
            label=label,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy (clamp in place)")
    ax.set_title(f"Clamping {len(results[-1].latents)} SAE latents to 0 while training continues", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir, _stem(run, "clamp"), inputs)[0]
