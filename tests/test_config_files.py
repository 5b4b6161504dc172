"""train_sae.py's `--config_file` (JSON and YAML through simple-parsing): the file sets any flag, the
command line overrides it (flat or dotted nested names), every example under configs/ parses, and the
`config.json` saved into each SAE folder reruns the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sae_train_helpers import fast_args, write_tiny_world

from lorasae.core.config_files import CONFIG_FILENAME, parse_with_config_file
from lorasae.train.config import TrainSaeConfig
from lorasae.train.sae_trainer import train_sae

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.[jy]*"))

pytestmark = pytest.mark.usefixtures("one_thread", "fast_names")  # fast runs keep plain names


def _read(path: Path) -> dict:
    return (
        yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    )


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_each_example_config_parses_to_its_values(path):
    raw = _read(path)
    cfg = parse_with_config_file(TrainSaeConfig, ["--config_file", str(path)])
    for key, value in raw.items():
        got = getattr(cfg, key)
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                assert getattr(got, sub) == sub_value, (key, sub)
        else:
            assert got == value, key
    cfg.resolved(d_model=128, max_positions=128, n_layers=4)  # settings valid for the tiny model


def test_command_line_overrides_the_file_flat_and_dotted(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("lr: 0.003\nk: 5\nsae_kwargs:\n  sparsity: 2.0\n  sparsity_warmup_steps: 10\n")
    from_file = parse_with_config_file(TrainSaeConfig, ["--config_file", str(path)])
    assert (from_file.lr, from_file.k, from_file.sae_kwargs.sparsity) == (0.003, 5, 2.0)
    cfg = parse_with_config_file(
        TrainSaeConfig,
        [
            "--config_file",
            str(path),
            "--lr",
            "1e-4",
            "--sae_kwargs.sparsity",
            "7",
            "--sparsity_warmup_steps",
            "3",
        ],
    )
    assert (cfg.lr, cfg.k, cfg.sae_kwargs.sparsity, cfg.sae_kwargs.sparsity_warmup_steps) == (1e-4, 5, 7.0, 3)
    # the seed's `--sae_kwargs.topk` sets k; `--sae_type` is `--architecture`
    seed_style = parse_with_config_file(TrainSaeConfig, ["--sae_kwargs.topk", "50", "--sae_type", "relu"])
    assert seed_style.architecture == "relu"
    assert seed_style.resolved(d_model=2304, max_positions=1024, n_layers=26).k == 50


def test_saved_config_shows_the_override_and_reruns_the_run(tmp_path, out_root):
    model_dir, data = write_tiny_world(tmp_path)
    args = fast_args(model_dir, data, num_train_tokens=640, checkpoint_every_pct=50, eval_every_pct=50)
    as_file = {args[i][2:]: args[i + 1] for i in range(0, len(args), 2)}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(as_file))
    first = train_sae(parse_with_config_file(TrainSaeConfig, ["--config_file", str(path), "--lr", "1e-4"]))
    for folder in [first.final_dir, *first.checkpoint_dirs.values()]:
        saved = json.loads((folder / CONFIG_FILENAME).read_text())
        assert saved["lr"] == 1e-4 and saved["k"] == 4 and saved["sae_kwargs"]["topk"] is None
    rerun_cfg = parse_with_config_file(
        TrainSaeConfig, ["--config_file", str(first.final_dir / CONFIG_FILENAME)]
    )
    second = train_sae(rerun_cfg)
    assert second.final_dir == first.final_dir
    assert second.val_loss == pytest.approx(first.val_loss, abs=1e-6)
    assert second.val_fvu == pytest.approx(first.val_fvu, abs=1e-6)


def test_a_training_state_from_before_the_new_settings_still_resumes(tmp_path):
    import torch

    from lorasae.train.state import (
        ADDED_SETTINGS,
        ResumeError,
        TrainingState,
        check_compatible,
        resume_settings,
    )

    cfg = parse_with_config_file(TrainSaeConfig, ["--model_type", "tiny"]).resolved(128, 128, 4)
    old = {k: v for k, v in resume_settings(cfg).items() if k not in ADDED_SETTINGS}
    w = torch.zeros(128 * 8, 128)
    state = TrainingState(0, {"W_dec": w}, {}, {}, [], [], 0.0, torch.zeros(1024), None, old)
    check_compatible(state, cfg, 128, tmp_path / "state.pt")  # the defaults it ran with: compatible
    relu = parse_with_config_file(TrainSaeConfig, ["--model_type", "tiny", "--sae_type", "relu"]).resolved(
        128, 128, 4
    )
    with pytest.raises(ResumeError, match="--architecture: saved 'topk', now 'relu'"):
        check_compatible(state, relu, 128, tmp_path / "state.pt")
