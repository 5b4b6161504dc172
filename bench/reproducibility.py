"""How far the demo's numbers move across machines: a representative part of `make demo` (the main TopK
SAE, one LoRA run on it, L_base / L_SAE / L_LoRA and % gap closed at the demo's sizes) rerun under
settings that change the floating-point path, each compared with the reference run.

Each variant is a fresh process in a fresh output root holding a copy of an already built world: torch
thread count (`torch.set_num_threads`), aten's vector ISA (`ATEN_CPU_CAPABILITY=default|avx2|avx512`: the
kernels another CPU would get) and MKL's code path (`MKL_CBWR=AVX2|COMPATIBLE`: the BLAS an AVX2-only or
another vendor's CPU would get; on a non-Intel CPU MKL ignores a named branch and takes its AUTO one, which
is still its reproducible mode but not another CPU's path). A variant equal to the reference in every
setting also shows whether a rerun on one machine is bit-identical. L_base, L_SAE and L_LoRA are read from
results.csv (6 decimals), so differences below 5e-7 read 0.

    python bench/reproducibility.py --world <root with saved_models/tiny>
    python bench/reproducibility.py --world /tmp/w --variants threads=1 threads=2 isa=avx2 mkl=AVX2
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lorasae.core.budget import DEMO_SAE_TOKENS  # noqa: E402
from lorasae.core.cli import parse  # noqa: E402

NUMBERS = ("L_base", "L_SAE", "L_LoRA")
# the reference, a rerun, two threads, an AVX2-only CPU (aten and MKL), aten's generic kernels, MKL's
# vendor-neutral path
VARIANTS = ("threads=1", "threads=1", "threads=2", "isa=avx2,mkl=AVX2", "isa=default", "mkl=COMPATIBLE")


@dataclass
class ReproducibilityBench:
    world: str = ""
    """Output root whose saved_models/tiny is the built world (copied into each variant's root). Default:
    the repository's root (its world is built first if missing)."""
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    """Variants, the first the reference: `threads=N`, `isa=default|avx2|avx512` (ATEN_CPU_CAPABILITY),
    `mkl=AVX2|AVX512|COMPATIBLE` (MKL_CBWR); join several with `,` (e.g. `threads=2,isa=avx2`). Threads
    default to 1."""
    layer: int = 1
    """Layer of the SAE (the demo's main SAE)."""
    sae_tokens: int = DEMO_SAE_TOKENS
    """Training tokens of the SAE (the demo's)."""
    lora_examples: int = 160
    """Training sequences of the LoRA run (the demo's)."""
    rank: int = 16
    """LoRA rank (the demo's)."""
    out: str = ""
    """Also write every run's numbers and the differences to this JSON file."""
    worker: str = ""
    """Internal: one variant in this process (`<variant>`; the output root is LORASAE_ROOT)."""


def _settings(variant: str) -> tuple[int, dict[str, str]]:
    """(threads, environment) of a variant string."""
    threads, env = 1, {}
    for part in filter(None, variant.split(",")):
        key, _, value = part.partition("=")
        if key == "threads":
            threads = int(value)
        elif key == "isa":
            env["ATEN_CPU_CAPABILITY"] = value
        elif key == "mkl":
            env["MKL_CBWR"] = value
        else:
            raise SystemExit(f"unknown variant part {part!r}: use threads=N, isa=..., mkl=...")
    return threads, env


def run_worker(bench: ReproducibilityBench) -> dict:
    """The SAE and the LoRA run in this process (LORASAE_ROOT set by the caller); their numbers."""
    import torch

    from lorasae.lora.config import TrainLoraConfig
    from lorasae.lora.run import main_many
    from lorasae.model.defaults import default_k
    from lorasae.model.load import model_shape
    from lorasae.results import load_results_csv, select_model
    from lorasae.train.config import TrainSaeConfig
    from lorasae.train.sae_trainer import train_sae

    threads, _ = _settings(bench.worker)
    torch.set_num_threads(threads)
    k = default_k(model_shape("tiny").d_model)
    sae = train_sae(
        TrainSaeConfig(
            device="cpu", model_type="tiny", layer=bench.layer, num_train_tokens=bench.sae_tokens, k=k,
            eval_every_pct=100.0, checkpoint_every_pct=100, seed=42,
        )
    )  # fmt: skip
    main_many(
        [
            TrainLoraConfig(
                device="cpu", model_type="tiny", sae_layer=str(bench.layer), rank=bench.rank,
                num_train_examples=bench.lora_examples, k=k, expansion_factor=8, seed=42, progress=False,
            )
        ]
    )  # fmt: skip
    row = select_model(load_results_csv(None), "tiny").iloc[-1]
    return {
        "variant": bench.worker,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "sae_val_fvu": float(sae.val_fvu),
        **{name: float(row[name]) for name in NUMBERS},
        "pct_gap_closed": 100 * float(row["frac_gap_closed"]),
    }


def _variant(bench: ReproducibilityBench, variant: str, world: Path) -> dict:
    _, env = _settings(variant)
    with tempfile.TemporaryDirectory(prefix="repro-") as tmp:
        shutil.copytree(world / "saved_models" / "tiny", Path(tmp) / "saved_models" / "tiny")
        argv = [sys.executable, __file__, "--worker", variant, "--layer", str(bench.layer),
                "--sae_tokens", str(bench.sae_tokens), "--lora_examples", str(bench.lora_examples),
                "--rank", str(bench.rank)]  # fmt: skip
        environ = {**os.environ, "LORASAE_ROOT": tmp, "OMP_NUM_THREADS": "1", **env}
        done = subprocess.run(argv, env=environ, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def differences(reference: dict, run: dict) -> dict:
    """Max |Δ| and max |Δ| / value over L_base, L_SAE, L_LoRA; |Δ| of % gap closed (points)."""
    abs_diff = [abs(run[n] - reference[n]) for n in NUMBERS]
    rel_diff = [abs(run[n] - reference[n]) / abs(reference[n]) for n in NUMBERS]
    return {
        "max_abs_ce": max(abs_diff),
        "max_rel_ce": max(rel_diff),
        "gap_points": abs(run["pct_gap_closed"] - reference["pct_gap_closed"]),
    }


def main(bench: ReproducibilityBench) -> list[dict]:
    from tabulate import tabulate

    from lorasae.world.tiny_model import ensure_tiny_model

    world = Path(bench.world) if bench.world else None
    if world is None:
        world = ensure_tiny_model().parent.parent
    runs = []
    for variant in bench.variants:
        run = _variant(bench, variant, world)
        runs.append({**run, **differences(runs[0] if runs else run, run)})
        print(f"{variant}: {json.dumps(run)}", flush=True)
    head = ["variant", "aten ISA", *NUMBERS, "% gap closed", "max |Δ CE|", "max rel Δ CE", "|Δ gap| (points)"]
    rows = [[r["variant"], r["capability"], *[r[n] for n in NUMBERS], r["pct_gap_closed"], r["max_abs_ce"],
             r["max_rel_ce"], r["gap_points"]] for r in runs]  # fmt: skip
    print(
        tabulate(
            rows, head, tablefmt="github", floatfmt=("", "", ".6f", ".6f", ".6f", ".3f", ".1e", ".1e", ".3f")
        )
    )
    if bench.out:
        Path(bench.out).write_text(json.dumps(runs, indent=1))
    return runs


if __name__ == "__main__":
    args = parse(ReproducibilityBench, sys.argv[1:])
    if args.worker:
        print(json.dumps(run_worker(args)))
    else:
        main(args)
