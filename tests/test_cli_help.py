"""Every command-line script answers `--help` (argparse formats each field docstring with `%`, so one
stray percent sign in a docstring crashes the help of the whole script)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lorasae.core.cli import parse

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = {
    "train_sae.py": "TrainSaeConfig",
    "train_lora.py": "TrainLoraConfig",
    "sweep.py": "SweepConfig",
    "lorasae/demo/main.py": "DemoConfig",
    "eval/steering/make_positive_examples.py": "Config",
    "eval/steering/tune_alpha.py": "Config",
    "eval/steering/run_eval.py": "Config",
    "eval/benchmarks/run_benchmarks.py": "BenchmarkConfig",
    "eval/dark_matter/run.py": "DarkMatterArgs",
    "eval/dark_matter/tutorial.py": "TutorialArgs",
    "eval/interp_analysis/run.py": "InterpArgs",
    "eval/SAE-Bench/get_peft_dict.py": "Config",
    "eval/SAE-Bench/run_eval.py": "SaeBenchArgs",
    "bench/harvest.py": "HarvestBench",
    "bench/lora_step.py": "LoraStepBench",
    "bench/sae_step.py": "SaeStepBench",
    "bench/arch_step.py": "ArchStepBench",
    "bench/validation_prefix.py": "ValidationPrefixBench",
}


def script_config(path: str, name: str) -> type:
    spec = importlib.util.spec_from_file_location(f"script_{Path(path).stem}", REPO / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)  # scripts run their main only under __main__
    return getattr(module, name)


@pytest.mark.parametrize("path", sorted(SCRIPTS))
def test_script_help(path: str, capsys):
    config = script_config(path, SCRIPTS[path])
    with pytest.raises(SystemExit) as exit_info:
        parse(config, ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and len(out.splitlines()) > 5, out


def test_demo_help_names_the_module_command_not_main_py():
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "lorasae.demo", "--help"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert out.startswith("usage: python -m lorasae.demo "), out.splitlines()[0]
