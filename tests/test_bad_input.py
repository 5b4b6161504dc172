"""The bad-input and fault matrix (issue 20): every script, called in-process through its error boundary
(`cli(argv)`, `lorasae.core.errors.main_guard`), answers a bad input with a clear message and no traceback,
exits non-zero, and changes no existing output (the output tree is hashed before and after). A few cases
run as real subprocesses to check the boundary from the shell (exit code, `--debug`, Ctrl-C = 130).

Everything runs on the cached small world (`small_world`) and random SAEs saved into a copy of one
prepared output root, so the matrix stays well under a minute or two on two cores."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import shutil
import sys
from pathlib import Path

import pytest
import torch

from lorasae.core.cli import parse
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.train.config import TrainSaeConfig
from lorasae.train.state import planned_dir

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = {
    "train_sae": "train_sae.py",
    "train_lora": "train_lora.py",
    "sweep": "sweep.py",
    "saebench": "eval/SAE-Bench/run_eval.py",
    "peft_dict": "eval/SAE-Bench/get_peft_dict.py",
    "steer": "eval/steering/run_eval.py",
    "tune": "eval/steering/tune_alpha.py",
    "positives": "eval/steering/make_positive_examples.py",
    "bench": "eval/benchmarks/run_benchmarks.py",
    "darkmatter": "eval/dark_matter/run.py",
    "grok": "eval/grok/run.py",
    "demo": "lorasae/demo/main.py",
}
MORE_SCRIPTS = {  # covered by test_bad_input_files.py
    "interp": "eval/interp_analysis/run.py",
    "tutorial": "eval/dark_matter/tutorial.py",
}
WORDS = "the a cat dog sat on mat ran far and then slept under big red tree house".split()

pytestmark = pytest.mark.usefixtures("one_thread")


def script(name: str):
    """The script module (imported once; `__name__` is not `__main__`, so nothing runs)."""
    key = f"_bad_input_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / {**SCRIPTS, **MORE_SCRIPTS}[name])
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def _save_sae(folder: Path, d_in: int, d_sae: int, layer: int, fill: float | None = None) -> Path:
    torch.manual_seed(layer)
    sae = TopKSAE(SaeConfig(d_in=d_in, d_sae=d_sae, k=4, hook_layer=layer))
    if fill is not None:
        with torch.no_grad():
            sae.W_dec.fill_(fill)
    sae.save(folder)
    return folder


@pytest.fixture(scope="module")
def prepared(small_world, tmp_path_factory) -> Path:
    """One output root with what the cases point at: text files, a good / NaN / wrong-width / truncated
    SAE, a finished-looking results table and SAE of our own, a corrupt JSON."""
    root = tmp_path_factory.mktemp("bad_input")
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(1500)]
    (root / "text.txt").write_text("\n\n".join(docs))
    (root / "empty.txt").write_text("")
    saes = root / "saes"
    _save_sae(saes / "good", 32, 64, 1)
    _save_sae(saes / "nan", 32, 64, 1, fill=float("nan"))
    _save_sae(saes / "wide", 256, 1024, 1)
    truncated = _save_sae(saes / "truncated", 32, 64, 1)
    weights = truncated / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    (saes / "no_weights").mkdir()
    (saes / "no_weights" / "cfg.json").write_text(json.dumps({"d_in": 32, "d_sae": 64}))
    badcfg = _save_sae(saes / "badcfg", 32, 64, 1)
    (badcfg / "cfg.json").write_text('{"d_in": 32, "d_sae": ')
    (root / "data").mkdir()
    (root / "data" / "results.csv").write_text("model,sae_tag,rank\ntiny,x,1\n")
    (root / "corrupt.json").write_text('{"not": json')
    (root / "model").symlink_to(Path(small_world))
    with pytest.MonkeyPatch.context() as patch:  # where the cases' runs write (their settings in the name)
        patch.setenv("LORASAE_ROOT", str(root))
        planned = {case: planned_dir(parse(TrainSaeConfig, [a.format(root=root) for a in argv]))
                   for case, _, argv, _ in CASES if case in ("sae-overwrite-different", "sae-resume-corrupt-state")}  # fmt: skip
    # our own SAE (layer 1, expansion 8, k 1) where the first case writes, recorded as trained otherwise
    ours = planned["sae-overwrite-different"]
    _save_sae(ours, 32, 256, 1)
    cfg = json.loads((ours / "cfg.json").read_text())
    cfg["metadata"]["lorasae"]["settings"] = {"num_train_tokens": 20_000}
    (ours / "cfg.json").write_text(json.dumps(cfg))
    # a training state damaged on disk, where --expansion_factor 2 --layer 0 would resume from
    state = planned["sae-resume-corrupt-state"]
    state.parent.mkdir(parents=True)
    (state.parent / f"training_state.{state.name}.pt").write_bytes(b"not a torch file")
    return root


@pytest.fixture
def root(prepared, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the prepared root as LORASAE_ROOT (cases cannot disturb each other)."""
    out = tmp_path / "root"
    shutil.copytree(prepared, out, symlinks=True)
    monkeypatch.setenv("LORASAE_ROOT", str(out))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LORASAE_DEBUG", raising=False)
    return out


def tree_hash(folder: Path) -> dict[str, str]:
    """Every file (not following the model link) → sha256 of its bytes, plus each folder's presence."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if rel == "model" or rel.startswith("model/"):
            continue
        if path.is_file() and not path.is_symlink():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            out[rel] = "dir"
    return out


def fail(name: str, argv: list[str], root: Path, capsys) -> str:
    """Run the case; assert non-zero exit, no traceback, nothing changed. Returns stderr."""
    before = tree_hash(root)
    code = script(name).cli([a.format(root=root) for a in argv])
    err = capsys.readouterr().err
    assert code != 0, err
    assert "Traceback" not in err, err
    assert err.strip(), "no message"
    assert tree_hash(root) == before, "an existing output changed"
    return err


W = ["--device", "cpu", "--model", "{root}/model"]
TXT = ["--dataset", "{root}/text.txt"]
SAE_SMALL = ["--num_train_tokens", "2_000", "--num_val_tokens", "64", "--ctx_len", "16", "--batch_size", "2"]
LORA_SMALL = ["--ctx_len", "16", "--num_val_tokens", "64", "--num_train_examples", "4", "--progress", "false"]

# (id, script, argv, a phrase the message must contain (case-insensitive))
CASES = [
    # --- train_sae.py --------------------------------------------------------------------------------
    ("sae-expansion-0", "train_sae", W + TXT + ["--expansion_factor", "0"], "expansion_factor"),
    ("sae-tokens-0", "train_sae", W + TXT + ["--num_train_tokens", "0"], "at least 1"),
    ("sae-tokens-word", "train_sae", W + TXT + ["--num_train_tokens", "lots"], "positive integer count"),
    ("sae-tokens-fraction", "train_sae", W + TXT + ["--num_train_tokens", "1.5"], "positive integer count"),
    ("sae-layer-99", "train_sae", W + TXT + ["--layer", "99"], "layer"),
    ("sae-model-missing", "train_sae", ["--device", "cpu", "--model", "{root}/no_model"], "no_model"),
    ("sae-model-type-unknown", "train_sae", ["--device", "cpu", "--model_type", "nosuch"], "nosuch"),
    (
        "sae-dataset-missing",
        "train_sae",
        W + ["--dataset", "{root}/missing.txt", "--layer", "0"] + SAE_SMALL,
        "missing.txt",
    ),
    (
        "sae-dataset-empty",
        "train_sae",
        W + ["--dataset", "{root}/empty.txt", "--layer", "0"] + SAE_SMALL,
        "tokens",
    ),
    (
        "sae-val-too-long",
        "train_sae",
        W
        + TXT
        + ["--layer", "0", "--num_train_tokens", "2_000", "--num_val_tokens", "100m", "--ctx_len", "16"],
        "at most",
    ),
    ("sae-overwrite-different", "train_sae", W + TXT + ["--layer", "1"] + SAE_SMALL, "--overwrite"),
    ("sae-lr-negative", "train_sae", W + TXT + ["--lr", "-1"], "lr"),
    ("sae-batch-0", "train_sae", W + TXT + ["--batch_size", "0"], "batch_size"),
    ("sae-ctx-too-long", "train_sae", W + TXT + ["--ctx_len", "100000"], "ctx_len"),
    ("sae-dtype-unknown", "train_sae", W + TXT + ["--layer", "0", "--dtype", "float13"], "float13"),
    ("sae-resume-and-init", "train_sae", W + TXT + ["--resume", "--init_sae", "{root}/saes/good"], "exclude"),
    ("sae-save-every-negative", "train_sae", W + TXT + ["--save_every_steps", "-1"], "save_every_steps"),
    (
        "sae-init-wide",
        "train_sae",
        W + TXT + ["--layer", "0", "--init_sae", "{root}/saes/wide"] + SAE_SMALL,
        "d_model",
    ),
    (
        "sae-init-missing",
        "train_sae",
        W + TXT + ["--layer", "0", "--init_sae", "{root}/saes/none"] + SAE_SMALL,
        "none",
    ),
    ("sae-unknown-flag", "train_sae", W + ["--no_such_flag", "1"], "unrecognized"),
    (
        "sae-resume-corrupt-state",
        "train_sae",
        W + TXT + ["--layer", "0", "--expansion_factor", "2", "--resume"] + SAE_SMALL,
        "training state",
    ),
    # --- train_lora.py -------------------------------------------------------------------------------
    ("lora-sae-nan", "train_lora", W + TXT + LORA_SMALL + ["--sae", "{root}/saes/nan"], "NaN or infinite"),
    ("lora-sae-wide", "train_lora", W + TXT + LORA_SMALL + ["--sae", "{root}/saes/wide"], "256"),
    (
        "lora-sae-truncated",
        "train_lora",
        W + TXT + LORA_SMALL + ["--sae", "{root}/saes/truncated"],
        "truncated",
    ),
    (
        "lora-sae-no-weights",
        "train_lora",
        W + TXT + LORA_SMALL + ["--sae", "{root}/saes/no_weights"],
        "sae_weights",
    ),
    ("lora-sae-missing", "train_lora", W + TXT + LORA_SMALL + ["--sae", "{root}/saes/none"], "none"),
    ("lora-layer-99", "train_lora", W + TXT + LORA_SMALL + ["--sae_layer", "99"], "99"),
    (
        "lora-rank-0",
        "train_lora",
        W + TXT + LORA_SMALL + ["--sae", "{root}/saes/good", "--rank", "0"],
        "rank",
    ),
    ("lora-examples-0", "train_lora", W + TXT + ["--num_train_examples", "0"], "at least 1"),
    ("lora-lr-0", "train_lora", W + TXT + LORA_SMALL + ["--sae", "{root}/saes/good", "--lr", "0"], "lr"),
    (
        "lora-dropout",
        "train_lora",
        W + TXT + LORA_SMALL + ["--sae", "{root}/saes/good", "--lora_dropout", "1.5"],
        "dropout",
    ),
    (
        "lora-layers-range",
        "train_lora",
        W + TXT + LORA_SMALL + ["--sae", "{root}/saes/good", "--LoRA_layers", "1-9"],
        "9",
    ),
    ("lora-checkpoint-missing", "train_lora", W + TXT + LORA_SMALL + ["--checkpoint_percent", "30"], "30"),
    (
        "lora-kl-impl",
        "train_lora",
        W + TXT + LORA_SMALL + ["--sae", "{root}/saes/good", "--kl_impl", "magic"],
        "kl_impl",
    ),
    (
        "lora-sae-and-pct",
        "train_lora",
        W + TXT + LORA_SMALL + ["--sae", "{root}/saes/good", "--checkpoint_percent", "50"],
        "checkpoint_percent",
    ),
    ("lora-sae-kind", "train_lora", W + TXT + LORA_SMALL + ["--sae_kind", "weird"], "sae_kind"),
    (
        "lora-dataset-empty",
        "train_lora",
        W + ["--dataset", "{root}/empty.txt"] + LORA_SMALL + ["--sae", "{root}/saes/good"],
        "tokens",
    ),
    ("lora-sae-badcfg", "train_lora", W + TXT + LORA_SMALL + ["--sae", "{root}/saes/badcfg"], "cfg.json"),
    (
        "lora-two-saes-one-layer",
        "train_lora",
        W + TXT + LORA_SMALL + ["--sae", "{root}/saes/good", "--sae", "{root}/saes/good"],
        "one SAE per layer",
    ),
    # --- sweep.py ------------------------------------------------------------------------------------
    ("sweep-catalog", "sweep", ["--catalog", "bogus", "--dry_run"], "bogus"),
    ("sweep-shard", "sweep", ["--shard", "5/4", "--dry_run"], "shard"),
    ("sweep-axes", "sweep", ["--axes", "sideways", "--dry_run"], "sideways"),
    ("sweep-examples-0", "sweep", ["--num_train_examples", "0", "--dry_run"], "at least 1"),
    ("sweep-rank-0", "sweep", ["--ranks", "0", "--dry_run"], "rank"),
    # --- SAE-Bench -----------------------------------------------------------------------------------
    ("saebench-model-type", "saebench", ["--model_type", "bogus"], "bogus"),
    ("saebench-evals", "saebench", W + ["--model_type", "base", "--evals", "nonsense"], "nonsense"),
    (
        "saebench-sae-nan",
        "saebench",
        W + ["--model_type", "base", "--evals", "core", "--sae", "{root}/saes/nan"],
        "NaN",
    ),
    (
        "saebench-sae-wide",
        "saebench",
        W + ["--model_type", "base", "--evals", "core", "--sae", "{root}/saes/wide"],
        "256",
    ),
    (
        "saebench-layer-99",
        "saebench",
        W + ["--model_type", "base", "--evals", "core", "--sae", "{root}/saes/good", "--layer", "99"],
        "99",
    ),
    (
        "saebench-adapter-missing",
        "saebench",
        W
        + [
            "--model_type",
            "peft",
            "--evals",
            "core",
            "--sae",
            "{root}/saes/good",
            "--adapter",
            "{root}/no_adapter",
        ],
        "no_adapter",
    ),
    (
        "saebench-output-file",
        "saebench",
        W
        + [
            "--model_type",
            "base",
            "--evals",
            "core",
            "--sae",
            "{root}/saes/good",
            "--output_dir",
            "{root}/text.txt",
        ],
        "text.txt",
    ),
    (
        "peft-dict-missing",
        "peft_dict",
        ["--model", "{root}/model", "--adapter", "{root}/no_adapter", "--output", "{root}/out.pt"],
        "no_adapter",
    ),
    # --- steering ------------------------------------------------------------------------------------
    ("steer-layer-99", "steer", W + ["--sae", "{root}/saes/good", "--layer", "99"], "99"),
    ("steer-sae-wide", "steer", W + ["--sae", "{root}/saes/wide"], "256"),
    ("steer-mode", "steer", W + ["--sae", "{root}/saes/good", "--mode", "sideways"], "sideways"),
    (
        "steer-adapter-missing",
        "steer",
        W + ["--sae", "{root}/saes/good", "--adapter", "{root}/no_adapter"],
        "no_adapter",
    ),
    ("tune-layer-99", "tune", W + ["--sae", "{root}/saes/good", "--layer", "99"], "99"),
    ("tune-sae-nan", "tune", W + ["--sae", "{root}/saes/nan"], "NaN or infinite"),
    ("positives-layer-99", "positives", W + ["--sae", "{root}/saes/good", "--layer", "99"], "99"),
    # --- benchmarks ----------------------------------------------------------------------------------
    ("bench-sae-wide", "bench", W + ["--sae", "--sae_source", "{root}/saes/wide"], "256"),
    ("bench-layer-99", "bench", W + ["--sae", "--sae_source", "{root}/saes/good", "--sae_layer", "99"], "99"),
    ("bench-sae-nan", "bench", W + ["--sae", "--sae_source", "{root}/saes/nan"], "NaN or infinite"),
    ("saebench-size", "saebench", W + ["--model_type", "base", "--size", "enormous"], "enormous"),
    ("positives-sae-wide", "positives", W + ["--sae", "{root}/saes/wide"], "256"),
    ("bench-model-type", "bench", ["--model_type", "bogus"], "bogus"),
    ("bench-limit", "bench", W + ["--limit", "-1"], "limit"),
    # --- dark matter, grok, demo ---------------------------------------------------------------------
    ("dm-layer-99", "darkmatter", W + TXT + ["--layer", "99", "--plan_only"], "99"),
    ("dm-tokens-0", "darkmatter", W + TXT + ["--num_tokens", "0"], "at least 1"),
    (
        "dm-sae-nan",
        "darkmatter",
        W + TXT + ["--num_tokens", "2000", "--sae", "{root}/saes/nan"],
        "NaN or infinite",
    ),
    ("dm-sae-wide", "darkmatter", W + TXT + ["--num_tokens", "2000", "--sae", "{root}/saes/wide"], "256"),
    ("grok-layer", "grok", ["--layer", "99"], "layer"),
    ("demo-layer-99", "demo", ["--layer", "99"], "layer"),
    ("demo-tokens-0", "demo", ["--sae_tokens", "0"], "sae_tokens"),
    ("demo-rank-0", "demo", ["--rank", "0"], "rank"),
]


@pytest.mark.parametrize(("name", "argv", "phrase"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_message_and_changes_nothing(name, argv, phrase, root, capsys):
    err = fail(name, argv, root, capsys)
    assert phrase.lower() in err.lower(), err


def test_matrix_has_at_least_sixty_cases_over_every_script():
    assert len(CASES) >= 60
    assert {c[1] for c in CASES} == set(SCRIPTS)
