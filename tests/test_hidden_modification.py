"""train_sae.py's hidden-modification target (lorasae/train/modification.py): f(x) against numpy on random
data, the activation buffer and validation on f(x), an identity map training exactly the plain SAE, a
modified run scored on f(x) and not on x, and the bad inputs' messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from sae_train_helpers import fast_config

from lorasae.core.losses import fvu
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.train.config import TrainSaeConfig
from lorasae.train.distributed import DistInfo
from lorasae.train.harvest import ActivationBuffer
from lorasae.train.modification import (
    HiddenModification,
    ModificationError,
    load_modification,
    save_modification_file,
)

pytestmark = pytest.mark.usefixtures("one_thread", "fast_names")  # fast runs keep plain names

LAYER = 1
SPECIAL = [0, 1, 2]


def _sae(d: int, width: int = 64, k: int = 4, seed: int = 0) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SaeConfig(d_in=d, d_sae=width, k=k))
    with torch.no_grad():
        sae.encoder.bias.normal_(0, 0.1)
    return sae.eval()


def _modification(name: str, W, b, sae, skip: bool = False) -> HiddenModification:
    return HiddenModification(name, W, b, sae, skip, torch.tensor(SPECIAL), {})


def test_each_target_equals_the_independent_computation_and_the_parts_sum_to_the_error():
    torch.manual_seed(0)
    d = 16
    x, W, b = torch.randn(200, d) * 2, torch.randn(d, d) * 0.3, torch.randn(d)
    sae = _sae(d)
    with torch.no_grad():
        error = x.double().numpy() - sae.reconstruct(x).double().numpy()  # e = x − SAE(x)
    linear = x.double().numpy() @ W.double().numpy() + b.double().numpy()
    got = {
        name: _modification(name, W, b, sae).transform(x)
        for name in ("linear_error", "nonlinear_error", "sae_error")
    }
    np.testing.assert_allclose(got["linear_error"].numpy(), linear, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got["nonlinear_error"].numpy(), error - linear, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got["sae_error"].numpy(), error, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose((got["linear_error"] + got["nonlinear_error"]).numpy(), error, atol=1e-4)
    assert np.abs(error - linear).mean() > 0.1  # the parts are not trivially equal


def test_buffer_and_validation_rows_are_f_of_x_without_the_special_positions():
    model = make_tiny_model("llama", n_layers=3, d=32)
    torch.manual_seed(1)
    batches = [torch.randint(3, 96, (2, 16)) for _ in range(3)]
    for ids in batches:
        ids[:, 0] = 1  # BOS
        ids[0, 7] = 2  # an EOS between documents
    W, b = torch.randn(32, 32) * 0.2, torch.randn(32)
    mod = _modification("linear_error", W, b, None, skip=True)
    buffer = ActivationBuffer(
        model, LAYER, iter(batches), 2, DistInfo(), torch.device("cpu"), 3, rows=mod.rows
    )
    from lorasae.model.hooks import residual_at

    for ids, rows in zip(batches, buffer):
        keep = ~torch.isin(ids, torch.tensor(SPECIAL))
        x = residual_at(model, ids, LAYER)[keep].double()
        assert rows.shape == (int(keep.sum()), 32) == (29, 32)
        torch.testing.assert_close(rows.double(), x @ W.double() + b.double(), rtol=1e-4, atol=1e-4)

    from lorasae.train.validation import reconstruction_stats

    sae = _sae(32)
    chunks = torch.cat(batches)
    stats = reconstruction_stats(model, sae, LAYER, chunks, 4, rows=mod.rows)
    keep = ~torch.isin(chunks, torch.tensor(SPECIAL))
    with torch.no_grad():
        target = residual_at(model, chunks, LAYER)[keep] @ W + b
        assert stats.fvu == pytest.approx(float(fvu(target, sae.reconstruct(target))), rel=1e-4)


def _write(path, d: int, sae_source: str = "unused", layer: int = LAYER, model: str = "", skip: bool = True):
    torch.manual_seed(2)
    return save_modification_file(
        path, torch.randn(d, d) * 0.2, torch.randn(d), sae_source, layer, model, skip
    )


def _cfg(path, modification: str = "nonlinear_error", model: str = "m") -> TrainSaeConfig:
    return TrainSaeConfig(
        model=model, layer=LAYER, hidden_modification=modification, modification_file=str(path)
    )


def test_bad_modification_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(ModificationError, match="does not exist.*linear_maps"):
        load_modification(_cfg(tmp_path / "missing.safetensors"), 32)
    with pytest.raises(ModificationError, match="W \\(16, 16\\).*d_model is 32"):
        load_modification(_cfg(_write(tmp_path / "d16.safetensors", 16), "linear_error"), 32)
    with pytest.raises(ModificationError, match="fit at layer 3, but --layer is 1"):
        load_modification(_cfg(_write(tmp_path / "l3.safetensors", 32, layer=3), "linear_error"), 32)
    with pytest.raises(ModificationError, match="fit on model 'other'"):
        load_modification(_cfg(_write(tmp_path / "other.safetensors", 32, model="other"), "linear_error"), 32)
    sae16 = _sae(16).save(tmp_path / "sae16")
    with pytest.raises(ModificationError, match="reads 16-dimensional activations.*d_model is 32"):
        load_modification(_cfg(_write(tmp_path / "m32.safetensors", 32, str(sae16))), 32)
    with pytest.raises(ModificationError, match="does not load"):
        load_modification(_cfg(_write(tmp_path / "nosae.safetensors", 32, str(tmp_path / "absent"))), 32)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModificationError, match="not a readable safetensors"):
        load_modification(_cfg(tmp_path / "junk.safetensors"), 32)
    from safetensors.torch import save_file

    save_file(
        {"W": torch.zeros(32, 32)}, str(tmp_path / "nob.safetensors"), metadata={"sae": "x", "layer": "1"}
    )
    with pytest.raises(ModificationError, match="lacks b"):
        load_modification(_cfg(tmp_path / "nob.safetensors"), 32)
    for settings, message in (
        (dict(hidden_modification="linear_error"), "needs --modification_file"),
        (dict(modification_file="f.safetensors"), "--modification_file needs --hidden_modification"),
        (dict(hidden_modification="bogus"), "must be one of none, linear_error"),
        (dict(hidden_modification="sae_error", modification_file="f", e2e=True), "not --e2e or a crosscoder"),
    ):
        with pytest.raises(ValueError, match=message):
            TrainSaeConfig(**settings).validate(32)


def test_a_bad_file_stops_train_sae_before_the_model_loads(small_world, out_root, monkeypatch, capsys):
    import lorasae.train.sae_trainer as trainer_module
    from train_sae import cli

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(trainer_module, "load_model", no_model)
    bad = _write(out_root / "d16.safetensors", 16)
    argv = ["--model", str(small_world), "--dataset", "builtin", "--device", "cpu", "--layer", "1",
            "--hidden_modification", "linear_error", "--modification_file", str(bad)]  # fmt: skip
    assert cli(argv) == 1
    assert "d_model is 32" in capsys.readouterr().err


def test_identity_map_trains_exactly_the_plain_sae_into_its_own_folder(small_world, out_root, capsys):
    """f(x) = x·I + 0 on every position: the same SAE as a plain run (same init, batches, b_dec), saved
    under modified/ with its own curve holding the validation FVU; the plain SAE and curve untouched."""
    from lorasae.train.sae_trainer import train_sae

    plain = train_sae(fast_config(small_world, "builtin"))
    plain_curve = json.loads(plain.curve_files["val_loss"].read_text())
    identity = save_modification_file(
        out_root / "identity.safetensors",
        torch.eye(32),
        torch.zeros(32),
        "none",
        LAYER,
        "",
        skip_special=False,
    )
    mod = train_sae(fast_config(small_world, "builtin", hidden_modification="linear_error",
                                modification_file=str(identity)))  # fmt: skip
    assert mod.final_dir != plain.final_dir and mod.final_dir.parts[-3] == "modified"
    printed = capsys.readouterr()
    assert "val FVU of linear_error (no spliced CE)" in printed.out and "val_fvu=" in printed.err
    assert mod.final_dir.parent.name == f"linear_error__identity__{plain.final_dir.parent.name}"
    ours, theirs = TopKSAE.load(mod.final_dir).state_dict(), TopKSAE.load(plain.final_dir).state_dict()
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-6)
    assert mod.val_fvu == pytest.approx(plain.val_fvu, rel=1e-5) and mod.base_ce is None
    curve_file = mod.curve_files["val_loss"]
    assert curve_file.name == f"modified_{mod.final_dir.parent.name}__layer_1_SAE.json"
    curve = json.loads(curve_file.read_text())
    assert curve == mod.val_loss and curve[-1] < curve[0]  # FVU on f(x) at each point, falling
    assert curve[-1] == pytest.approx(mod.val_fvu, rel=0.2)  # the curve's chunks are the first val chunks
    assert json.loads(plain.curve_files["val_loss"].read_text()) == plain_curve
    meta = json.loads((mod.final_dir / "cfg.json").read_text())["metadata"]["lorasae"]
    assert "spliced_val_ce" not in meta and meta["val_fvu_of_target"] == pytest.approx(curve[-1])
    assert meta["settings"]["hidden_modification"] == "linear_error" and meta["sae_kind"] == "modified"


def test_modified_run_trains_on_the_nonlinear_error_and_is_scored_on_it(small_world, out_root):
    from lorasae.model.data import load_token_split
    from lorasae.model.hooks import residual_at
    from lorasae.model.load import load_model, special_token_ids
    from lorasae.train.sae_trainer import train_sae

    given = _sae(32, width=128, k=4, seed=3).save(out_root / "given_sae")
    torch.manual_seed(4)
    W, b = torch.randn(32, 32) * 0.1, torch.randn(32) * 0.1
    path = save_modification_file(out_root / "map.safetensors", W, b, str(given), LAYER, small_world.name)
    result = train_sae(fast_config(small_world, "builtin", hidden_modification="nonlinear_error",
                                   modification_file=str(path)))  # fmt: skip
    model, tokenizer = load_model(str(small_world), device="cpu")
    val = load_token_split("builtin", tokenizer, 32, 128, 42).val
    keep = ~torch.isin(val, torch.tensor(special_token_ids(tokenizer)))
    trained, sae = TopKSAE.load(result.final_dir), TopKSAE.load(given)
    with torch.no_grad():
        x = residual_at(model, val, LAYER)[keep]
        target = (x.double() - sae.reconstruct(x).double() - x.double() @ W.double() - b.double()).float()
        on_target = float(fvu(target, trained.reconstruct(target)))
        on_x = float(fvu(x, trained.reconstruct(x)))
    assert result.val_fvu == pytest.approx(on_target, rel=1e-3)
    assert abs(on_x - on_target) > 0.2  # scored on f(x), not on the residual (0.39 vs 0.69 here)
    assert result.val_loss[-1] < result.val_loss[0]  # it learned f(x)


def test_the_modification_file_is_the_same_setting_however_it_is_named(out_root, monkeypatch):
    """A file under the output root named relatively (from any folder) or absolutely is one setting, so a
    rerun with the other spelling is not refused as 'trained with other settings'."""
    from lorasae.core.paths import from_portable
    from lorasae.train.config import TrainSaeConfig

    target = out_root / "data" / "dark_matter" / "tiny" / "linear_maps" / "m.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    monkeypatch.chdir(out_root)
    spellings = [str(target), "data/dark_matter/tiny/linear_maps/m.safetensors", "./data/../data/dark_matter/tiny/linear_maps/m.safetensors"]  # fmt: skip
    resolved = [
        TrainSaeConfig(model_type="tiny", hidden_modification="linear_error", modification_file=s)
        .resolved(32, 64, 2)
        .modification_file
        for s in spellings
    ]
    assert resolved == ["data/dark_matter/tiny/linear_maps/m.safetensors"] * 3
    monkeypatch.chdir(out_root.parent)  # read back from elsewhere: still the same file
    assert from_portable(resolved[0]).resolve() == target.resolve()
