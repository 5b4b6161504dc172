"""`make demo`, then README's "after `make demo`" commands (issue 25): a README command that runs what a demo
stage already ran (same model, SAE, adapter and settings) skips every result, saying so, and leaves every
result, record and figure as the demo wrote it. Each test runs the demo's stage on the small world (copied in
as the built-in model), then the script with README's flags."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch

from lorasae.core.records import record_path

pytestmark = pytest.mark.usefixtures("one_thread")

SKIP_LINE = "exists for these settings (run record"


@pytest.fixture
def demo_root(out_root, small_world, monkeypatch):
    """The small world as the built-in model, a TopK SAE where train_sae.py's default flags put it (layer 1,
    expansion 8, the default k) and a rank-2 adapter on every layer where train_lora.py puts it."""
    from lorasae.core.paths import adapter_dir, sae_dir, sae_tag
    from lorasae.lora.adapters import attach_lora
    from lorasae.model.defaults import default_k
    from lorasae.model.load import d_model, load_model, num_layers
    from lorasae.sae import SaeConfig, TopKSAE

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    shutil.copytree(small_world, out_root / "saved_models" / "tiny")
    model, _ = load_model("tiny", device="cpu")
    d, n = d_model(model), num_layers(model)
    k = default_k(d)
    torch.manual_seed(0)
    TopKSAE(SaeConfig(d_in=d, d_sae=8 * d, k=k, hook_layer=1), fast=False).eval().save(
        sae_dir("tiny", "normal", 8, k, 1)
    )
    peft_model = attach_lora(model, layers=list(range(n)), rank=2)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
    peft_model.save_pretrained(str(adapter_dir("tiny", sae_tag(8, k), list(range(n)), 2)))
    return out_root


def _context(root: Path, **sizes):
    from lorasae.evals.shape import DemoContext, EvalSizes
    from lorasae.model.defaults import default_k
    from lorasae.model.load import model_shape

    shape = model_shape("tiny")
    return DemoContext(
        device="cpu", layer=1, seed=42, force=False, sizes=EvalSizes(**sizes), k=default_k(shape.d_model),
        n_layers=shape.n_layers, rank=2, sweep_k=(default_k(shape.d_model),), sae_tokens=1000, lora_examples=8,
    )  # fmt: skip


def _files(folders: list[Path]) -> dict[Path, tuple[bytes, int]]:
    """Every file under `folders`: its bytes and mtime."""
    return {
        p: (p.read_bytes(), p.stat().st_mtime_ns)
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_readme_saebench_commands_after_the_demo_skip_every_eval_and_touch_nothing(demo_root, capsys):
    """The demo's SAE-Bench stage passes --layer (its main SAE's layer); README's command leaves it at the
    default (the default SAE's layer): the same SAE and the same run, so every eval is skipped."""
    from lorasae.saebench.demo_stage import demo_stage

    evals = ["core", "absorption"]
    title, done, run = demo_stage(_context(demo_root, saebench_evals=",".join(evals)))
    assert not done
    run()
    results, plots = demo_root / "eval" / "SAE-Bench" / "results", demo_root / "plots"
    written = [p for p in results.rglob("*.json") if p.name in {f"{e}.json" for e in evals}]
    assert len(written) == 4 and all(record_path(p).is_file() for p in written)  # base and peft
    assert list(plots.glob("saebench_tiny.*"))
    before = _files([results, plots])
    capsys.readouterr()
    time.sleep(0.01)

    script = _script("eval/SAE-Bench/run_eval.py")
    for variant in ("base", "peft"):  # README's lines, at the evals the demo ran
        argv = ["--device", "cpu", "--model", "tiny", "--model_type", variant, "--evals", ",".join(evals)]
        assert script.cli(argv) in (0, None)
        out = capsys.readouterr().out
        for name in evals:
            assert f"{name}: " in out and SKIP_LINE in out.split(f"{name}: ", 1)[1].splitlines()[0], out
    assert _files([results, plots]) == before


def _script(relative: str):
    import importlib.util

    path = Path(__file__).resolve().parent.parent / relative
    spec = importlib.util.spec_from_file_location(f"script_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
