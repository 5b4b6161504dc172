"""Every file and folder the project writes gets the user's umask (issue 25 item 5): 0644 / 0755 under
umask 022 and 0600 / 0700 under 077 — safetensors files (which the library writes 0600), figures, the
built-in world (built in a mkdtemp folder, 0700) and PEFT adapters included."""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # works under any pytest import mode

pytestmark = pytest.mark.usefixtures("one_thread")

MODES = {0o022: (0o644, 0o755), 0o077: (0o600, 0o700)}


@pytest.fixture(params=sorted(MODES), ids=lambda m: f"umask{m:03o}")
def umask(request) -> Iterator[int]:
    """Set the process umask for the test and restore it after."""
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def modes_under(folder: Path) -> dict[str, int]:
    """Every entry under `folder` (not `folder` itself, not following links) → its permission bits."""
    return {
        str(p.relative_to(folder)): stat.S_IMODE(p.lstat().st_mode)
        for p in sorted(folder.rglob("*"))
        if not p.is_symlink()
    }


def assert_umask_modes(folder: Path, mask: int) -> None:
    file_mode, dir_mode = MODES[mask]
    found = modes_under(folder)
    assert found, f"nothing written under {folder}"
    wrong = {
        rel: oct(mode)
        for rel, mode in found.items()
        if mode != (dir_mode if (folder / rel).is_dir() else file_mode)
    }
    assert not wrong, f"expected files {oct(file_mode)}, folders {oct(dir_mode)}: {wrong}"


def test_every_writer_follows_the_umask(tmp_path, umask):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from safetensors.torch import save_file

    from lorasae.core.atomic import append_csv_row, atomic_dir, atomic_save_file, atomic_write_json
    from lorasae.plotting._common import save_figure
    from lorasae.sae import SaeConfig, TopKSAE

    out = tmp_path / "out"
    atomic_write_json(out / "data" / "curve.json", [1, 2])
    append_csv_row(out / "data" / "results.csv", {"model": "tiny", "rank": 1})
    atomic_save_file(out / "w.safetensors", lambda tmp: save_file({"a": torch.zeros(2)}, str(tmp)))
    with atomic_dir(out / "folder") as tmp:
        (tmp / "sub").mkdir()
        save_file({"a": torch.zeros(2)}, str(tmp / "sub" / "x.safetensors"))
    TopKSAE(SaeConfig(d_in=8, d_sae=16, k=2, hook_layer=0)).save(out / "sae")
    fig = plt.figure()
    save_figure(fig, out / "plots", "figure")
    plt.close(fig)
    assert_umask_modes(out, umask)


def test_a_saved_adapter_follows_the_umask(tmp_path, umask):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from lorasae.lora.outputs import save_adapter

    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    peft = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=2, target_modules=["q_proj"]))
    save_adapter(peft, tmp_path / "out" / "rank_2", {"rank": 2})  # with its run record
    assert_umask_modes(tmp_path / "out", umask)


def test_the_world_build_follows_the_umask(tmp_path, umask):
    from lorasae.world.tiny_model import TinyWorldConfig, build_tiny_model

    config = dataclasses.replace(TinyWorldConfig.for_tests(), n_docs=200, train_tokens=4_000)
    (tmp_path / "out").mkdir()
    build_tiny_model(tmp_path / "out" / "tiny", config, progress=False)
    assert (tmp_path / "out" / "tiny" / "model.safetensors").is_file()
    assert_umask_modes(tmp_path / "out", umask)


def test_train_sae_then_train_lora_write_every_output_with_umask_022(small_world, tmp_path, monkeypatch):
    from test_bad_input import LORA_SMALL, SAE_SMALL, script

    root = tmp_path / "root"
    root.mkdir()
    (root / "model").symlink_to(Path(small_world))
    (root / "text.txt").write_text("\n\n".join(f"the cat {i} sat on the mat and ran far" for i in range(400)))
    monkeypatch.setenv("LORASAE_ROOT", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    world = ["--device", "cpu", "--model", str(root / "model"), "--dataset", str(root / "text.txt")]
    before = os.umask(0o022)
    try:
        assert script("train_sae").cli(world + ["--layer", "0"] + SAE_SMALL) == 0
        (sae,) = [p for p in (root / "saved_saes").rglob("model.layers.0") if "pct" not in str(p)]
        lora = world + LORA_SMALL + ["--sae", str(sae), "--rank", "2", "--save_model"]
        assert script("train_lora").cli(lora) == 0
    finally:
        os.umask(before)
    written = modes_under(root)
    assert any(p.endswith(".safetensors") for p in written) and any("saved_models" in p for p in written)
    assert_umask_modes(root, 0o022)
