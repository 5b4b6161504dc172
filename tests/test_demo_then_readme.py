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
    assert list(plots.glob("saebench_tiny.*"))  # README's figure, under the plain name
    (peft_slot,) = [p.parent.name for p in written if "tiny_peft" in p.parent.parent.name][:1]
    # the runs' own figure is named after the SAE and adapter it draws: another adapter's results (README's
    # 300-sequence LoRA becomes the default adapter) go to another figure and never redraw the demo's
    assert (plots / f"saebench_tiny__{peft_slot}.png").is_file()
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


def test_readme_interp_command_after_the_demo_skips_and_leaves_the_demos_files(demo_root, capsys):
    """Same SAE, adapter and settings (README's --lora_rank / --lora_span are the demo's adapter's): the
    analysis is skipped; its figures are drawn under names of their own beside the demo's plain ones."""
    from lorasae.interp.run import demo_stage

    ctx = _context(demo_root)
    title, done, run = demo_stage(ctx)
    assert not done
    run()
    data, plots = demo_root / "data" / "interp", demo_root / "plots"
    (result,) = [p for p in data.rglob("*.json") if not p.name.endswith(".run.json")]
    assert (plots / "tiny_interp_layers.png").is_file()
    before = _files([data, plots])
    capsys.readouterr()
    time.sleep(0.01)
    argv = [
        "--device",
        "cpu",
        "--model_type",
        "tiny",
        "--lora_rank",
        str(ctx.rank),
        "--lora_span",
        ctx.every_layer,
    ]
    assert _script("eval/interp_analysis/run.py").cli(argv) in (0, None)
    out = capsys.readouterr().out
    assert f"interp: {result.relative_to(demo_root)} {SKIP_LINE}" in out
    after = _files([data, plots])
    assert {p: after[p] for p in before} == before
    assert demo_stage(ctx)[1]  # the demo still finds its stage done


def test_readme_dashboard_command_after_the_demo_writes_its_own_folder(demo_root, capsys):
    """The demo's dashboards show other latents (the steering latent and changed:8) than README's command
    (changed:10, the script's default): another run, in a folder of its own, the demo's left as they were;
    README's command run again is skipped."""
    from lorasae.dashboard.run import demo_stage

    ctx = _context(demo_root)
    title, done, run = demo_stage(ctx)
    assert not done
    run()
    dashboards = demo_root / "eval" / "dashboard"
    (demo_index,) = dashboards.rglob("index.html")
    assert "__latents-changed" in demo_index.parent.name
    before = _files([dashboards])
    argv = ["--device", "cpu", "--model_type", "tiny", "--latents", "changed:10", "--export", "neuronpedia"]
    assert _script("eval/dashboard/run.py").cli([*argv, "--progress", "false"]) == 0
    indexes = sorted(dashboards.rglob("index.html"))
    assert len(indexes) == 2
    (readme_index,) = [p for p in indexes if p != demo_index]
    assert readme_index.parent.name == demo_index.parent.name.split("__")[0]  # the default settings' name
    after = _files([dashboards])
    assert {p: after[p] for p in before} == before
    assert demo_stage(ctx)[1]
    capsys.readouterr()
    assert _script("eval/dashboard/run.py").cli([*argv, "--progress", "false"]) == 0
    assert f"dashboard: {readme_index.parent.relative_to(demo_root)} {SKIP_LINE}" in capsys.readouterr().out
    assert _files([dashboards]) == after


def test_readme_steering_benchmark_and_dark_matter_commands_name_other_results_than_the_demos(demo_root):
    """The demo runs these three at smaller sizes than the scripts' defaults, which README's commands run:
    each is another run and its results carry the demo's settings in their names (`settings_variant`),
    so README's commands write the default-named results beside the demo's, never over them."""
    from lorasae.core.cli import parse
    from lorasae.darkmatter.cli import DarkMatterArgs
    from lorasae.darkmatter.cli import result_variant as dark_matter_variant
    from lorasae.darkmatter.suite import demo_args
    from lorasae.evals.shape import EvalSizes
    from lorasae.lmeval.config import BenchmarkConfig
    from lorasae.lmeval.layout import settings_variant as benchmark_variant
    from lorasae.steering.scripts import EvalConfig, PositivesConfig, TuneConfig
    from lorasae.steering.suite import demo_configs, steering_variant

    ctx = _context(demo_root)
    sizes = EvalSizes()  # the demo's
    tiny = ["--device", "cpu", "--model_type", "tiny"]

    demo = steering_variant(*demo_configs(ctx.device, ctx.layer, ctx.seed, False, sizes))
    readme = steering_variant(
        parse(PositivesConfig, tiny), parse(TuneConfig, [*tiny, "--tuning"]), parse(EvalConfig, tiny)
    )
    assert readme == "" and demo.startswith("neg-50") and "snippets-5000" in demo

    readme_cfg = parse(BenchmarkConfig, ["--device", "cpu", "--model", "tiny", "--all_four"])
    readme = benchmark_variant(readme_cfg.limit_value, readme_cfg.num_fewshot, readme_cfg.max_length)
    demo = benchmark_variant(BenchmarkConfig(limit=sizes.benchmark_limit).limit_value)
    assert readme == "" and demo == "limit-100"

    ks = tuple(x for x in ctx.sweep_k if x != ctx.k)
    demo = dark_matter_variant(
        demo_args(
            ctx.device, ctx.layer, ks, ctx.sae_tokens, ctx.lora_examples, ctx.rank, ctx.seed, False, sizes
        )
    )
    readme = dark_matter_variant(parse(DarkMatterArgs, tiny))
    assert readme == "" and demo and "tokens-24000" in demo
