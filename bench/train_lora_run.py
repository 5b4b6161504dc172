"""The whole `train_lora.py` run vs the original repository's approach, re-implemented here only as the
reference: its loop over one sequence per step with the full [B, T, V] logits of the base model
(adapters off, no SAE) and of the LoRA model (SAE spliced), `kl_div(log_softmax, softmax, "batchmean")`
on them, AdamW + clipping, and validation CE from full logits.

Both on the same Gemma-2-shaped random model (the full 256k vocabulary, soft-capping, tied head; toy
width so it fits the CPU), the same SAE, adapters (rank 64, all layers), data and settings; each run is
a fresh process (`--worker`), alternating; sequences/s over the whole run (validation included) and the
process's peak resident set above what the imports take.

    python bench/train_lora_run.py
    python bench/train_lora_run.py --sequences 16 --ctx_len 512
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lorasae.core.cli import parse  # noqa: E402


@dataclass
class TrainLoraRunBench:
    sequences: int = 8
    """Training sequences per run (batch 1, the paper's)."""
    ctx_len: int = 256
    """Tokens per sequence."""
    eval_every: int = 4
    """Validate every this many sequences (plus before training)."""
    val_chunks: int = 2
    """Validation sequences."""
    width_divisor: int = 9
    """Gemma-2-2B's widths divided by this (9: d_model 256)."""
    layers: int = 4
    """Decoder layers."""
    repeats: int = 2
    """Runs per variant, alternating (median)."""
    workdir: str = str(REPO / ".rehearsal" / "train_lora_run")
    """Model, SAE and outputs."""
    worker: str = ""
    """Internal: ours | original."""


def prepare(bench: TrainLoraRunBench) -> tuple[Path, Path, int]:
    """(model folder, SAE folder, SAE layer), built once."""
    import torch
    from rehearsal import world_folder

    from lorasae.model.paper_shapes import Shrink, save_random_model, shrunk_config
    from lorasae.sae import SaeConfig, TopKSAE

    work = Path(bench.workdir)
    model_dir = work / f"gemma2-d{2304 // bench.width_divisor}-L{bench.layers}"
    config = shrunk_config("gemma-2-2b", Shrink(bench.width_divisor, bench.layers, 256_000))
    if not (model_dir / ".complete").exists():
        save_random_model(config, model_dir, world_folder(work), torch.float32)
        (model_dir / ".complete").write_text("")
    layer = 1
    sae_dir = work / "sae" / f"model.layers.{layer}"
    if not (sae_dir / "cfg.json").exists():
        torch.manual_seed(0)
        d = config.hidden_size
        TopKSAE(SaeConfig(d_in=d, d_sae=8 * d, k=32, hook_layer=layer)).save(sae_dir)
    return model_dir, sae_dir, layer


def run_ours(bench: TrainLoraRunBench, model_dir: Path, sae_dir: Path, layer: int) -> float:
    from lorasae.lora.config import TrainLoraConfig
    from lorasae.lora.run import main

    cfg = TrainLoraConfig(
        device="cpu", dtype="float32", model=str(model_dir), dataset="builtin", sae=[str(sae_dir)],
        sae_layer=str(layer), rank=64, num_train_examples=bench.sequences, ctx_len=bench.ctx_len,
        num_val_tokens=bench.val_chunks * bench.ctx_len, eval_every=bench.eval_every, val_batch_size=1,
        progress=False,
    )  # fmt: skip
    start = time.perf_counter()
    main(cfg)
    return time.perf_counter() - start


def run_original(bench: TrainLoraRunBench, model_dir: Path, sae_dir: Path, layer: int) -> float:
    import torch

    from lorasae.core.runtime import seed_everything
    from lorasae.kl import naive_kl
    from lorasae.lora.adapters import attach_lora
    from lorasae.lora.trainer import sae_splices
    from lorasae.model.data import load_token_split
    from lorasae.model.hooks import splice
    from lorasae.model.load import load_model, num_layers, special_token_ids
    from lorasae.sae import load_sae

    start = time.perf_counter()
    seed_everything(42)
    model, tokenizer = load_model(str(model_dir), "cpu", "float32")
    split = load_token_split("builtin", tokenizer, bench.ctx_len, bench.val_chunks * bench.ctx_len, 42)
    sae = load_sae(sae_dir).requires_grad_(False)
    splices = sae_splices({layer: sae}, special_token_ids(tokenizer))
    peft = attach_lora(model, list(range(num_layers(model))), 64)
    params = [p for p in peft.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.01)

    @torch.no_grad()
    def validate(with_sae: bool = True) -> float:
        peft.eval()
        losses = []
        for ids in split.val.split(1):
            with splice(peft, splices(ids) if with_sae else {}):
                losses.append(float(peft(input_ids=ids, labels=ids).loss))  # full [1, T, V] logits
        peft.train()
        return sum(losses) / len(losses)

    with peft.disable_adapter():
        validate(with_sae=False)  # the original model's CE
    validate()
    batches = split.train_batches(1)
    for step in range(1, bench.sequences + 1):
        ids = next(batches)
        with torch.no_grad(), peft.disable_adapter():
            base = peft(input_ids=ids).logits  # [1, T, V]
        with splice(peft, splices(ids)):
            student = peft(input_ids=ids).logits
        loss = naive_kl(student, base)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % bench.eval_every == 0 or step == bench.sequences:
            validate()
    return time.perf_counter() - start


def worker(bench: TrainLoraRunBench) -> None:
    import tempfile

    model_dir, sae_dir, layer = prepare(bench)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LORASAE_ROOT"] = tmp
        fn = run_ours if bench.worker == "ours" else run_original
        print(json.dumps({"wall": fn(bench, model_dir, sae_dir, layer)}))


def spawn(bench: TrainLoraRunBench, which: str) -> dict:
    from rehearsal import child_env, run_measured

    args = [sys.executable, __file__, "--worker", which]
    for key, value in asdict(bench).items():
        if key != "worker":
            args += [f"--{key}", str(value)]
    log = Path(bench.workdir) / f"{which}.log"
    _, rss, rc = run_measured(args, child_env(Path(bench.workdir)), log)
    if rc:
        raise RuntimeError(f"{which} failed:\n{log.read_text()[-4000:]}")
    wall = json.loads(log.read_text().strip().splitlines()[-1])["wall"]
    return {"wall": wall, "rss": rss}


def main(bench: TrainLoraRunBench) -> None:
    if bench.worker:
        worker(bench)
        return
    from rehearsal import baseline_rss
    from tabulate import tabulate

    Path(bench.workdir).mkdir(parents=True, exist_ok=True)
    prepare(bench)
    base = baseline_rss(Path(bench.workdir))
    runs: dict[str, list[dict]] = {"ours": [], "original": []}
    for _ in range(bench.repeats):
        for which in runs:
            runs[which].append(spawn(bench, which))
            print(f"{which}: {runs[which][-1]}", file=sys.stderr)
    wall = {w: statistics.median(r["wall"] for r in rs) for w, rs in runs.items()}
    peak = {w: (max(r["rss"] for r in rs) - base) / 2**20 for w, rs in runs.items()}
    rows = [
        ["train_lora.py (fused KL in chunks, no [T, V] logits)", wall["ours"], bench.sequences / wall["ours"],
         peak["ours"]],
        ["original loop (full [B, T, V] logits, batchmean kl_div)", wall["original"],
         bench.sequences / wall["original"], peak["original"]],
    ]  # fmt: skip
    d = 2304 // bench.width_divisor
    print(f"Gemma-2-shaped d={d}, {bench.layers} layers, vocab 256,000; {bench.sequences} x {bench.ctx_len} "
          f"tokens, LoRA r64 all layers, validation every {bench.eval_every} on {bench.val_chunks} sequences; "
          f"median of {bench.repeats} alternating runs")  # fmt: skip
    print(tabulate(rows, headers=["run", "wall s", "sequences/s", "peak MiB above imports"], tablefmt="github",
                   floatfmt=".3g"))  # fmt: skip
    print(f"train_lora_run: {wall['original'] / wall['ours']:.2f}x the original's sequences/s, "
          f"{peak['ours'] / peak['original']:.2f}x its peak memory")  # fmt: skip


if __name__ == "__main__":
    main(parse(TrainLoraRunBench))
