"""Real-shape rehearsal on the CPU: every paper path at Gemma-2-2B / Llama-3.2-1B shape, random weights.

Each model is built from its real config (`lorasae/model/paper_shapes.py`, no download) in bf16 and saved with
the built-in world's tokenizer into a folder that the scripts load like any model. Then each path runs as
its own script, in its own process, so that it goes through the real loading, dtype and splice code:

1. `train_sae.py` for a few steps at layer 12, k=64, x8 (d_sae 18,432 / 16,384), 1024-token sequences;
2. `train_lora.py`: one step on one 1024-token sequence, rank 64, all layers, the full vocabulary, with a
   Gemma Scope-shaped JumpReLU SAE (2304 x 16,384, random) spliced for Gemma, the SAE of 1. for Llama;
3. the SAEBench core eval on the LoRA-merged model on a few 128-token sequences;
4. one lm-eval benchmark task (built-in `tiny_facts`) on a few documents, adapter on, SAE spliced;
5. steering: one alpha on the tuning split (`tune_alpha.py`), then the final evaluation (`run_eval.py`),
   on a few examples.

Peak memory per path: the maximum resident set of its process (`wait4`'s ru_maxrss, glibc returning freed
blocks at once via `MALLOC_MMAP_THRESHOLD_`), minus that of a process that only imports the libraries —
i.e. the tensors (weights included) the path needs, comparable with `torch.cuda.max_memory_allocated`.

    python bench/rehearsal.py                                   # both models, ~1 h on 2 loaded cores
    python bench/rehearsal.py --models gemma-2-2b --paths sae,lora
    python bench/rehearsal.py --shrink                          # toy widths, same architectures (seconds)
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tabulate import tabulate  # noqa: E402

from lorasae.core.cli import parse  # noqa: E402
from lorasae.model.paper_shapes import PAPER_LAYER, Shrink, param_count, real_config, shrunk_config  # noqa: E402

PATHS = ("sae", "lora", "core", "benchmark", "steering", "steering_eval")


@dataclass
class RehearsalArgs:
    models: str = "llama-3.2-1b,gemma-2-2b"
    """Comma-separated model shapes (keys of lorasae.model.paper_shapes.REAL_CONFIGS)."""
    paths: str = ",".join(PATHS)
    """Comma-separated paths to run: sae, lora, core, benchmark, steering, steering_eval (lora needs sae
    for Llama; core, benchmark and steering use the adapter lora saved)."""
    shrink: bool = False
    """Toy widths (same architectures) for a dry run of the whole rehearsal in seconds."""
    workdir: str = str(REPO / ".rehearsal")
    """Where the model folders and every output go (LORASAE_ROOT of the scripts)."""
    sae_steps: int = 3
    """train_sae.py optimiser steps (1024 tokens each)."""
    ctx_len: int = 1024
    """Tokens per training sequence (the paper's 1024)."""
    eval_seqs: int = 2
    """Sequences (128 tokens) for the core eval; documents for the benchmark task; steering positives/4."""
    dtype: str = "bfloat16"
    """Language-model dtype."""
    keep_models: bool = True
    """Keep the saved random-weight model folders for the next run (5 GB for Gemma-2-2B)."""
    prepare_only: bool = False
    """Only build (or find) the model folders and print their paths, one per line (bench/gpu_check.sh)."""
    json_out: str | None = None
    """Also write the measurements as JSON here."""
    worker: str | None = None
    """Internal: run one in-process path (core) in this process."""
    model_dir: str | None = None
    """Internal: the model folder for --worker."""
    sae_dir: str | None = None
    """Internal: the SAE folder for --worker."""
    adapter_dir: str | None = None
    """Internal: the adapter folder for --worker."""


# --- setup -----------------------------------------------------------------------------------------


def world_folder(workdir: Path) -> Path:
    """A built-in world (tokenizer + world.json): the test fixture's cache if present, else built (~1 min)."""
    cached = sorted((REPO / ".cache").glob("test_world-*/*/world.json"))
    if cached:
        return cached[-1].parent
    from lorasae.world.tiny_model import TinyWorldConfig, ensure_tiny_model

    return ensure_tiny_model(root=workdir / "world", config=TinyWorldConfig.for_tests(), progress=False)


def model_config(name: str, args: RehearsalArgs):
    return shrunk_config(name, Shrink()) if args.shrink else real_config(name)


def model_folder(name: str, args: RehearsalArgs, workdir: Path) -> Path:
    """Where the random-weight model of `name` is saved (`.complete` inside once it is)."""
    return workdir / "models" / (name + ("-shrunk" if args.shrink else ""))


def ensure_model(name: str, args: RehearsalArgs, workdir: Path) -> Path:
    """The random-weight model folder of `name` (built once; a marker says it is complete)."""
    import torch

    from lorasae.core.runtime import parse_dtype
    from lorasae.model.paper_shapes import save_random_model

    folder = model_folder(name, args, workdir)
    if (folder / ".complete").exists():
        return folder
    config = model_config(name, args)
    start = time.perf_counter()
    save_random_model(config, folder, world_folder(workdir), parse_dtype(args.dtype))
    (folder / ".complete").write_text("")
    print(f"[{name}] random {args.dtype} model saved in {time.perf_counter() - start:.0f} s -> {folder}")
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return folder


def jumprelu_sae(d_in: int, d_sae: int, layer: int, folder: Path) -> Path:
    """A Gemma Scope-shaped JumpReLU SAE (SAELens format, random weights, thresholds > 0)."""
    import sae_lens
    import torch

    if (folder / "cfg.json").exists():
        return folder
    cfg = sae_lens.JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=False)
    cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
    cfg.metadata.exclude_special_tokens = True  # as Gemma Scope: BOS keeps the original activation
    sae = sae_lens.JumpReLUSAE(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        sae.W_enc.normal_(0, d_in**-0.5)
        sae.W_dec.copy_(sae.W_enc.T / sae.W_enc.T.norm(dim=1, keepdim=True))
        sae.threshold.uniform_(0.01, 0.1)
    sae.save_model(folder)
    return folder


# --- measuring one process --------------------------------------------------------------------------


def run_measured(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, int, int]:
    """(seconds, peak resident set in bytes, exit status) of one child process; output goes to `log`."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss * 1024, proc.returncode


def child_env(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "LORASAE_ROOT": str(workdir / "outputs"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "TOKENIZERS_PARALLELISM": "false",
        "MALLOC_MMAP_THRESHOLD_": "65536",  # freed blocks leave the resident set at once
    }


def baseline_rss(workdir: Path) -> int:
    """Peak resident set of a process that imports what the scripts import and loads nothing."""
    code = "import torch, transformers, peft, sae_lens, lm_eval, lorasae.lora.run, lorasae.saebench.run"
    _, rss, rc = run_measured([sys.executable, "-c", code], child_env(workdir), workdir / "baseline.log")
    if rc:
        raise RuntimeError(f"baseline import failed: see {workdir / 'baseline.log'}")
    return rss


# --- the paths -----------------------------------------------------------------------------------------


def commands(name: str, model: Path, args: RehearsalArgs, workdir: Path, layer: int) -> dict[str, list[str]]:
    """argv of each path for model `name` (the SAE/adapter folders they need are found when run)."""
    py = sys.executable
    common = ["--device", "cpu", "--dtype", args.dtype, "--model", str(model)]
    ctx = 128 if args.shrink else args.ctx_len
    k = 8 if args.shrink else 64
    return {
        "sae": [py, "train_sae.py", *common, "--dataset", "builtin", "--layer", str(layer),
                "--k", str(k), "--expansion_factor", "8", "--ctx_len", str(ctx), "--batch_size", "1",
                "--num_train_tokens", str(args.sae_steps * ctx), "--num_val_tokens", str(ctx),
                "--val_batch_size", "1", "--eval_every_pct", "100", "--checkpoint_every_pct", "100",
                "--optimizer", "adam"],
        "lora": [py, "train_lora.py", *common, "--dataset", "builtin", "--sae_layer", str(layer),
                 "--rank", "64", "--LoRA_layers", "all", "--num_train_examples", "1", "--batch_size", "1",
                 "--ctx_len", str(ctx), "--num_val_tokens", str(ctx), "--val_batch_size", "1",
                 "--eval_every", "1", "--save_model", "--progress", "false"],
        "core": [py, str(Path(__file__).resolve()), "--worker", "core", "--model_dir", str(model),
                 "--eval_seqs", str(args.eval_seqs), "--dtype", args.dtype],
        "benchmark": [py, "eval/benchmarks/run_benchmarks.py", *common, "--model_type", "peft", "--sae",
                      "--tasks", "tiny_facts", "--limit", str(args.eval_seqs), "--batch_size", "1",
                      "--bootstrap_iters", "10"],
        "steering": [py, "eval/steering/tune_alpha.py", *common, "--neuron", "0", "--alpha", "1.0",
                     "--negatives", "builtin", "--num_negatives", str(args.eval_seqs), "--batch_size", "2",
                     "--max_length", "32"],
        "steering_eval": [py, "eval/steering/run_eval.py", *common, "--neuron", "0", "--negatives", "builtin",
                          "--num_negatives", str(args.eval_seqs), "--batch_size", "2", "--max_length", "32"],
    }  # fmt: skip


def newest(root: Path, pattern: str) -> Path | None:
    hits = sorted(root.glob(pattern), key=lambda p: p.stat().st_mtime)
    return hits[-1].parent if hits else None


def sae_folder_for(name: str, config, workdir: Path, layer: int, shrink: bool) -> Path | None:
    """Gemma: the Gemma Scope-shaped JumpReLU SAE (2304 x 16,384); Llama: the SAE train_sae.py wrote."""
    if config.model_type == "gemma2":
        width = 16_384 if not shrink else 8 * config.hidden_size
        return jumprelu_sae(config.hidden_size, width, layer, workdir / "saes" / f"{name}-jumprelu-{width}")
    return newest(workdir / "outputs" / "saved_saes" / name, f"**/model.layers.{layer}/cfg.json")


def with_sources(path: str, argv: list[str], sae: Path | None, adapter: Path | None) -> list[str]:
    extra: list[str] = []
    if path in ("lora", "steering", "steering_eval") and sae is not None:
        extra = ["--sae", str(sae)]
    if path == "core":
        extra = (["--sae_dir", str(sae)] if sae else []) + (
            ["--adapter_dir", str(adapter)] if adapter else []
        )
    if path == "benchmark":
        extra = (["--sae_source", str(sae)] if sae else []) + (["--adapter", str(adapter)] if adapter else [])
    if path.startswith("steering") and adapter is not None:
        extra += ["--adapter", str(adapter)]
    return argv + extra


def write_positives(workdir: Path, count: int) -> None:
    from lorasae.core.atomic import atomic_write_json
    from lorasae.steering.args import positives_path

    texts = [
        "The telescope measured the spectrum of the distant star.",
        "Cells divide by mitosis after copying their chromosomes.",
        "The experiment tested how temperature changes reaction speed.",
        "Physicists observed the particle decay in the detector.",
        "Photosynthesis turns light, water and carbon dioxide into sugar.",
        "The chemist titrated the acid with a solution of sodium hydroxide.",
        "Geologists dated the rock layers by their radioactive isotopes.",
        "The vaccine trial compared two groups of volunteers.",
    ]
    os.environ["LORASAE_ROOT"] = str(workdir / "outputs")
    atomic_write_json(positives_path(0), {"examples": texts[: max(4, count * 4)], "source": "rehearsal"})


def rehearse_model(name: str, args: RehearsalArgs, workdir: Path, base: int) -> list[dict]:
    config = model_config(name, args)
    layer = min(PAPER_LAYER[name], config.num_hidden_layers - 1)
    built_now = not (model_folder(name, args, workdir) / ".complete").exists()
    model = ensure_model(name, args, workdir)
    argvs = commands(name, model, args, workdir, layer)
    env = child_env(workdir)
    rows = []
    for path in [p for p in args.paths.split(",") if p]:
        if path not in PATHS:
            raise SystemExit(f"unknown path {path!r}: choose from {', '.join(PATHS)}")
        key = Path(model).name
        sae = sae_folder_for(key, config, workdir, layer, args.shrink)
        adapter = newest(workdir / "outputs" / "saved_models" / key, "**/adapter_config.json")
        if path == "steering":
            write_positives(workdir, args.eval_seqs)
        argv = with_sources(path, argvs[path], sae, adapter)
        log = workdir / f"{key}-{path}.log"
        seconds, rss, rc = run_measured(argv, env, log)
        row = {
            "model": name + (" (shrunk)" if args.shrink else ""),
            "path": path,
            "ok": rc == 0,
            "seconds": round(seconds, 1),
            "peak_rss_gib": round(rss / 2**30, 2),
            "peak_tensors_gib": round(max(0, rss - base) / 2**30, 2),
            "weights_gib": round(param_count(config) * 2 / 2**30, 2),
            "log": str(log),
        }
        rows.append(row)
        status = "ok" if rc == 0 else f"FAILED (exit {rc}), see {log}"
        print(f"[{name}] {path}: {status}, {seconds:.0f} s, peak {row['peak_tensors_gib']} GiB above imports")
        if rc != 0:
            print(log.read_text()[-3000:])
    if not args.keep_models and not args.shrink and built_now:  # only a model this run made
        import shutil

        shutil.rmtree(model)
    return rows


# --- the in-process core-eval worker --------------------------------------------------------------------


def core_worker(args: RehearsalArgs) -> None:
    """SAEBench core on the LoRA-merged model (`run_eval.py --evals core --model_type peft`) with its
    sizes cut to `eval_seqs` sequences of 128 tokens (the script's smallest preset is 32 sequences)."""
    from lorasae.model.load import model_key
    from lorasae.saebench.args import SaeBenchArgs, results_dir
    from lorasae.saebench.load import load_for_eval
    from lorasae.saebench.plan import make_plan
    from lorasae.saebench.run import run_evals

    eval_args = SaeBenchArgs(
        device="cpu", dtype=args.dtype, model=args.model_dir, dataset="builtin", sae=args.sae_dir,
        adapter=args.adapter_dir, model_type="peft" if args.adapter_dir else "base", evals="core",
        size="small", labelled_data="builtin", llm_batch_size=1, plot=False,
    )  # fmt: skip
    loaded = load_for_eval(eval_args)
    plan = make_plan(eval_args, loaded.model, next(loaded.model.parameters()).device)
    plan.core = dataclasses.replace(
        plan.core, batch_size_prompts=args.eval_seqs, n_eval_reconstruction_batches=1,
        n_eval_sparsity_variance_batches=1,
    )  # fmt: skip
    out = results_dir(eval_args.model_name, eval_args.model_type)
    written = run_evals(loaded, plan, ["core"], out)
    result = json.loads(Path(written["core"]).read_text())
    print(json.dumps({"core": str(written["core"]), "keys": sorted(result)[:8]}))
    print(f"core eval of {model_key(args.model_dir or '')}: written {written['core']}")


def main(args: RehearsalArgs) -> list[dict]:
    if args.worker == "core":
        core_worker(args)
        return []
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.prepare_only:
        for name in [m for m in args.models.split(",") if m]:
            print(ensure_model(name, args, workdir))
        return []
    base = baseline_rss(workdir)
    print(f"baseline (imports only): {base / 2**30:.2f} GiB resident")
    rows: list[dict] = []
    start = time.perf_counter()
    for name in [m for m in args.models.split(",") if m]:
        rows += rehearse_model(name, args, workdir, base)
    table = [[r["model"], r["path"], "ok" if r["ok"] else "FAILED", r["seconds"], r["peak_tensors_gib"],
              r["weights_gib"]] for r in rows]  # fmt: skip
    headers = ["model", "path", "status", "seconds", "peak GiB (above imports)", "bf16 weights GiB"]
    print(tabulate(table, headers=headers, tablefmt="github"))
    failed = [f"{r['model']} {r['path']}" for r in rows if not r["ok"]]
    print(f"rehearsal: {len(rows) - len(failed)}/{len(rows)} paths ok in {time.perf_counter() - start:.0f} s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"baseline_gib": base / 2**30, "rows": rows}, indent=2))
    if failed:
        raise SystemExit(f"rehearsal failed: {', '.join(failed)}")
    return rows


if __name__ == "__main__":
    main(parse(RehearsalArgs))
