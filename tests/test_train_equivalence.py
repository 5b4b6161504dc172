"""The composed trainer changes no number: small runs of every variant (TopK, TopK with AuxK, ReLU with
both reconstruction terms, crosscoders over layers and across models, e2e, a hidden modification,
--positions, an interrupted run resumed) give bit-identical final weights, curves and result numbers to
the ones pinned in tests/data/train_equivalence.json, written by main's mixin trainer before the
refactor on this machine's CPU build (one torch thread). Rewrite it with
`python tests/test_train_equivalence.py` only when a change is meant to move the numbers."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from sae_train_helpers import fast_config, write_tiny_world
from safetensors.torch import load_file

from lorasae.core.errors import RunInterrupted
from lorasae.train.logger import TrainLogger
from lorasae.train.modification import save_modification_file
from lorasae.train.sae_trainer import train_sae

pytestmark = pytest.mark.usefixtures("fast_names")  # fast runs keep plain names

PINNED = Path(__file__).parent / "data" / "train_equivalence.json"
SHORT = {"num_train_tokens": 1280, "eval_every_pct": 25, "checkpoint_every_pct": 50}  # 20 steps
VARIANTS: dict[str, dict[str, object]] = {
    "topk": {},
    "topk_auxk": {"auxk_alpha": 0.03125, "dead_after_tokens": 64},
    "relu": {"architecture": "relu", "sparsity": 0.01, "sparsity_warmup_steps": 5},
    "relu_sum_sq": {"architecture": "relu", "recon_loss": "sum_sq", "sparsity": 0.001},
    "crosscoder": {"architecture": "crosscoder", "layers": "0 1"},
    "crosscoder_relu": {"architecture": "crosscoder", "layers": "0 1", "crosscoder_activation": "relu"},
    "crosscoder_models": {"architecture": "crosscoder", "models": "{model} {model2}"},
    "e2e": {"e2e": True},
    "modified": {"hidden_modification": "linear_error", "modification_file": "{map}"},
    "positions": {"positions": "-2"},
    "resumed": {"save_every_steps": 5},  # interrupted after step 7, then --resume
}
INTERRUPT_AT = 7


def _world(folder: Path) -> dict[str, str]:
    model_dir, data = write_tiny_world(folder)
    second = folder / "model2"
    shutil.copytree(model_dir, second)
    torch.manual_seed(5)
    mod = save_modification_file(folder / "map.safetensors", torch.randn(32, 32) * 0.2, torch.randn(32),
                                 "none", 1, "", skip_special=False)  # fmt: skip
    return {"model": str(model_dir), "model2": str(second), "map": str(mod), "data": str(data)}


def _settings(variant: str, world: dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = dict(SHORT)
    for key, value in VARIANTS[variant].items():
        out[key] = value.format(**world) if isinstance(value, str) else value
    return out


def _config(world: dict[str, str], **settings: object):
    listed = {k: v for k, v in settings.items() if isinstance(v, str) and " " in v}
    plain = {k: v for k, v in settings.items() if k not in listed}
    cfg = fast_config(Path(world["model"]), Path(world["data"]), **plain)
    for key, value in listed.items():  # nargs="*" flags
        setattr(cfg, key, value.split() if key == "models" else [int(x) for x in value.split()])
    if "models" in listed:
        cfg.model = None
    return cfg


def _run(variant: str, world: dict[str, str], monkeypatch) -> dict[str, object]:
    settings = _settings(variant, world)
    if variant == "resumed":
        original = TrainLogger.step

        def stop(self, step, metrics):
            original(self, step, metrics)
            if step == INTERRUPT_AT:
                raise KeyboardInterrupt

        monkeypatch.setattr(TrainLogger, "step", stop)
        with pytest.raises(RunInterrupted):
            train_sae(_config(world, **settings))
        monkeypatch.setattr(TrainLogger, "step", original)
        settings["resume"] = True
    result = train_sae(_config(world, **settings))
    tensors = load_file(str(result.final_dir / "sae_weights.safetensors"))
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].numpy().tobytes())
    metrics = {k: v for k, v in result.train_metrics.items() if "time" not in k and "per_s" not in k}
    return {
        "weights": digest.hexdigest(),
        "steps": result.steps,
        "curve": result.val_loss,
        "base_ce": result.base_ce,
        "val_fvu": result.val_fvu,
        "val_l0": result.val_l0,
        "val_dead_fraction": result.val_dead_fraction,
        "train_dead_fraction": result.train_dead_fraction,
        "train_metrics": metrics,
        "per_source": {str(k): v for k, v in result.per_source.items()},
    }


@pytest.fixture(scope="module")
def equivalence_world(tmp_path_factory):
    return _world(tmp_path_factory.mktemp("equivalence"))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_gives_mains_numbers(variant, equivalence_world, tmp_path, monkeypatch):
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))[variant]
    got = json.loads(json.dumps(_run(variant, equivalence_world, monkeypatch)))
    assert got == pinned


if __name__ == "__main__":  # pin the numbers: python tests/test_train_equivalence.py
    import os
    import tempfile

    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    with tempfile.TemporaryDirectory() as tmp:
        world = _world(Path(tmp) / "world")
        pins = {}
        for name in sorted(VARIANTS):
            os.environ["LORASAE_ROOT"] = str(Path(tmp) / name)
            pins[name] = json.loads(json.dumps(_run(name, world, mp)))
            print(name, pins[name]["weights"][:12], pins[name]["curve"][-1], file=sys.stderr)
    PINNED.write_text(json.dumps(pins, indent=1) + "\n", encoding="utf-8")
