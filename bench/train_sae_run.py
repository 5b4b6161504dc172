"""The whole `train_sae.py` run (harvest + SAE steps + validation curve + checkpoints) vs EleutherAI
sparsify's own `Trainer` (no validation) on the same model, data, layer, k, width and token count.

Each run is a fresh process (`--worker ours|sparsify`), the two alternating `--repeats` times; the time of
a run is its wall time after the imports: loading the model and the token split, training, and (ours)
validating 101 times and writing checkpoints. sparsify gets exactly our training chunks, in our order,
as a `datasets.Dataset`, with Adam and the same lr, warm-up and batch (1024 tokens: 8 x 128).

    python bench/train_sae_run.py                         # built-in model, 300k tokens
    python bench/train_sae_run.py --tokens 1_000_000 --repeats 3

A third variant, `ours_final`, is train_sae.py validating once at the end and saving only the final SAE:
the same work as sparsify's Trainer plus one validation.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lorasae.core.cli import parse  # noqa: E402


@dataclass
class TrainSaeRunBench:
    model: str = "tiny"
    """Model: tiny (the built-in one) or a folder."""
    layer: int = 1
    """SAE layer."""
    tokens: int = 300_000
    """Training tokens per run."""
    expansion_factor: int = 8
    """SAE width = d_model x this."""
    k: int | None = None
    """Active latents (default: train_sae.py's for this model)."""
    repeats: int = 2
    """Runs per variant, alternating (median reported)."""
    threads: int | None = None
    """torch threads in each run (default: torch's)."""
    curve_val_tokens: int | None = None
    """Pass --curve_val_tokens to train_sae.py (default: its own rule)."""
    worker: str = ""
    """Internal: ours | ours_final | sparsify (one run in this process)."""


def _settings(bench: TrainSaeRunBench, out: Path):
    from lorasae.train.config import TrainSaeConfig

    cfg = TrainSaeConfig(
        device="cpu", model=bench.model if bench.model != "tiny" else None, model_type="tiny",
        dataset="builtin", layer=bench.layer, num_train_tokens=bench.tokens, k=bench.k,
        expansion_factor=bench.expansion_factor, curve_val_tokens=bench.curve_val_tokens,
    )  # fmt: skip
    os.environ["LORASAE_ROOT"] = str(out)
    return cfg


def run_ours(bench: TrainSaeRunBench, out: Path, curve: bool = True) -> dict:
    """train_sae.py's whole run; with `curve` False it validates once at the end and saves only the final
    SAE (the work sparsify's Trainer does, plus one validation)."""
    import dataclasses

    from lorasae.train.sae_trainer import train_sae

    cfg = _settings(bench, out)
    if not curve:
        cfg = dataclasses.replace(cfg, eval_every_pct=100.0, checkpoint_every_pct=100)
    start = time.perf_counter()
    result = train_sae(cfg)
    wall = time.perf_counter() - start
    return {"wall": wall, "train_s": 60 * result.minutes[-1], "tokens": result.tokens, "fvu": result.val_fvu}


def run_sparsify(bench: TrainSaeRunBench, out: Path) -> dict:
    with contextlib.redirect_stdout(sys.stderr):
        from sparsify import SparseCoderConfig, TrainConfig, Trainer
    from datasets import Dataset

    from lorasae.model.data import load_token_split
    from lorasae.model.load import d_model, load_model
    from lorasae.train.sae_trainer import max_positions

    cfg = _settings(bench, out)
    start = time.perf_counter()
    model, tokenizer = load_model(cfg.model_name, "cpu", "float32")
    cfg = cfg.resolved(d_model(model), max_positions(model))
    split = load_token_split(cfg.dataset, tokenizer, cfg.ctx_len, cfg.num_val_tokens, cfg.seed)
    chunks = split.train_chunks()
    n = cfg.total_steps * cfg.batch_size
    ids = [next(chunks).tolist() for _ in range(n)]
    dataset = Dataset.from_dict({"input_ids": ids}).with_format("torch")
    train_cfg = TrainConfig(
        SparseCoderConfig(num_latents=d_model(model) * cfg.expansion_factor, k=cfg.k),
        batch_size=cfg.batch_size, layers=[cfg.layer], lr=cfg.lr, optimizer="adam",
        lr_warmup_steps=cfg.warmup_steps, dead_feature_threshold=cfg.dead_after_tokens,
        save_every=10**9, log_to_wandb=False, save_dir=str(out / "sparsify"),
    )  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):
        Trainer(train_cfg, dataset, model).fit()
    wall = time.perf_counter() - start
    return {"wall": wall, "tokens": n * cfg.ctx_len}


def worker(bench: TrainSaeRunBench) -> None:
    import torch

    if bench.threads:
        torch.set_num_threads(bench.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if bench.worker == "sparsify":
            print(json.dumps(run_sparsify(bench, Path(tmp))))
        else:
            print(json.dumps(run_ours(bench, Path(tmp), curve=bench.worker == "ours")))


def spawn(bench: TrainSaeRunBench, which: str) -> dict:
    args = [sys.executable, __file__, "--worker", which]
    for key, value in asdict(bench).items():
        if key != "worker" and value is not None:
            args += [f"--{key}", str(value)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env |= {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=False, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"{which} run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(bench: TrainSaeRunBench) -> None:
    if bench.worker:
        worker(bench)
        return
    from tabulate import tabulate

    runs: dict[str, list[dict]] = {"ours": [], "ours_final": [], "sparsify": []}
    for _ in range(bench.repeats):
        for which in runs:
            runs[which].append(spawn(bench, which))
            print(f"{which}: {runs[which][-1]}", file=sys.stderr)
    med = {w: statistics.median(r["wall"] for r in rs) for w, rs in runs.items()}
    tok = {w: runs[w][0]["tokens"] / med[w] for w in runs}
    train_s = statistics.median(r["train_s"] for r in runs["ours"])
    rows = [
        ["train_sae.py (harvest + steps + 101-point validation + checkpoints)", med["ours"], tok["ours"]],
        ["train_sae.py, final validation and checkpoint only", med["ours_final"], tok["ours_final"]],
        ["sparsify Trainer (no validation)", med["sparsify"], tok["sparsify"]],
    ]
    print(f"model {bench.model}, layer {bench.layer}, {bench.tokens:,} tokens, x{bench.expansion_factor}, "
          f"median of {bench.repeats} alternating runs; ours spent {train_s:.1f} s of its run training")  # fmt: skip
    print(tabulate(rows, headers=["run", "wall s", "tokens/s"], tablefmt="github", floatfmt=".1f"))
    ratio = tok["ours"] / tok["sparsify"]
    print(f"train_sae_run: {ratio:.2f}x sparsify's Trainer in tokens/s over the whole run (target >= 1.5)")
    same_work = tok["ours_final"] / tok["sparsify"]
    print(f"train_sae_run: {same_work:.2f}x sparsify's Trainer with the curve off (one final validation)")


if __name__ == "__main__":
    main(parse(TrainSaeRunBench))
