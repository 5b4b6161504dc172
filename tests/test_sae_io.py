"""SAELens-format save/load, load_sae over every local format (and the release path, mocked), splice_fn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from required_libs import require
from safetensors.torch import save_file

from lorasae.sae import (
    SaeConfig,
    SaeFormatError,
    SaeLensAdapter,
    SaeNotFoundError,
    TopKSAE,
    check_sae_fits,
    load_sae,
    sae_hook_layer,
    splice_fn,
)
from lorasae.sae.config import layer_from_hook_name
from lorasae.sae.jumprelu import JumpReLUSAE
from lorasae.sae.transcoder import Transcoder

sae_lens = require("sae_lens")


def make_sae(d: int = 16, m: int = 64, k: int = 4, layer: int | None = 2, seed: int = 0, **kw) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SaeConfig(d_in=d, d_sae=m, k=k, hook_layer=layer, model_name="tiny", **kw))
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.1)
        sae.encoder.bias.normal_(0, 0.1)
    return sae


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)


# ---- our format ------------------------------------------------------------------------------------
def test_save_load_roundtrip_with_metadata(tmp_path: Path) -> None:
    sae = make_sae()
    folder = sae.save(
        tmp_path / "model.layers.2", step=7, train_tokens=1024, checkpoint_pct=10, where=tmp_path
    )
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 4 and cfg["d_in"] == 16 and cfg["d_sae"] == 64
    assert cfg["metadata"]["hook_name"] == "blocks.2.hook_resid_post"
    assert cfg["metadata"]["lorasae"] == {"format": 1, "step": 7, "train_tokens": 1024, "checkpoint_pct": 10,
                                          "where": str(tmp_path)}  # fmt: skip
    loaded = TopKSAE.load(folder)
    assert loaded.cfg == sae.cfg
    for (name, a), (_, b) in zip(sae.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    half = TopKSAE.load(folder, dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and half.cfg.dtype == "bfloat16"


def test_sae_lens_loads_our_folder_with_equal_outputs(tmp_path: Path) -> None:
    sae = make_sae()
    sae.save(tmp_path / "ours")
    theirs = sae_lens.SAE.load_from_disk(tmp_path / "ours")
    assert type(theirs).__name__ == "TopKSAE" and theirs.cfg.k == 4
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        z = sae.encode(x)
        torch.testing.assert_close(theirs.encode(x), z)
        torch.testing.assert_close(theirs.decode(z), sae.decode(z))
        torch.testing.assert_close(theirs(x), sae.reconstruct(x))


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "sae"
    make_sae(seed=1).save(folder)
    make_sae(seed=2).save(folder)  # overwrite in place
    assert torch.equal(TopKSAE.load(folder).W_dec, make_sae(seed=2).W_dec)

    import lorasae.sae.io as io

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(io, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        make_sae(seed=3).save(folder)
    assert torch.equal(TopKSAE.load(folder).W_dec, make_sae(seed=2).W_dec)  # the old SAE is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]  # no temp folders left behind


def test_clear_errors_for_missing_corrupt_truncated_files(tmp_path: Path) -> None:
    folder = make_sae().save(tmp_path / "sae")
    weights = folder / "sae_weights.safetensors"
    data = weights.read_bytes()

    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(SaeFormatError, match=r"sae_weights\.safetensors is corrupt or truncated.*rerun"):
        load_sae(folder)
    weights.unlink()
    with pytest.raises(SaeFormatError, match=r"no weights.*interrupted"):
        load_sae(folder)
    with pytest.raises(SaeFormatError, match=r"sae_weights\.safetensors is missing"):
        TopKSAE.load(folder)
    weights.write_bytes(data)
    (folder / "cfg.json").write_text('{"architecture": "topk", "d_in"')
    with pytest.raises(SaeFormatError, match=r"cfg\.json is corrupt or truncated"):
        load_sae(folder)
    (folder / "cfg.json").write_text(json.dumps({"architecture": "topk", "d_in": 8, "d_sae": 64, "k": 4}))
    with pytest.raises(SaeFormatError, match=r"W_enc has shape \(16, 64\).*needs \(8, 64\)"):
        load_sae(folder)


# ---- load_sae over local formats ------------------------------------------------------------------
def test_load_sae_our_folder_and_parent_folder(tmp_path: Path) -> None:
    sae = make_sae(layer=3)
    sae.save(tmp_path / "expansion_4_L0_4" / "model.layers.3")
    x = torch.randn(6, 16)
    for source in (tmp_path / "expansion_4_L0_4" / "model.layers.3", str(tmp_path / "expansion_4_L0_4")):
        loaded = load_sae(source, dtype=torch.float64)
        assert isinstance(loaded, TopKSAE) and loaded.dtype == torch.float64 and not loaded.training
        assert loaded.hook_layer == 3 and sae_hook_layer(loaded) == 3
        torch.testing.assert_close(loaded.reconstruct(x).float(), sae.reconstruct(x))

    make_sae(layer=5).save(tmp_path / "expansion_4_L0_4" / "model.layers.5")
    with pytest.raises(SaeNotFoundError, match=r"layers \[3, 5\] \(model\.layers\.3, model\.layers\.5\)"):
        load_sae(tmp_path / "expansion_4_L0_4")
    with pytest.raises(SaeNotFoundError, match="none is for layer 4"):
        load_sae(tmp_path / "expansion_4_L0_4", layer=4)
    assert load_sae(tmp_path / "expansion_4_L0_4", layer=5).hook_layer == 5


def test_load_sae_not_found_lists_nearby(tmp_path: Path) -> None:
    (tmp_path / "runs" / "expansion_8_L0_4").mkdir(parents=True)
    with pytest.raises(SaeNotFoundError, match=r"No SAE in .*expansion_8_L0_4/"):
        load_sae(tmp_path / "runs")
    with pytest.raises(SaeNotFoundError, match=r"not an existing folder.*contains: expansion_8_L0_4/"):
        load_sae(str(tmp_path / "runs" / "typo" / "model.layers.1"))
    with pytest.raises(SaeNotFoundError, match="Did you mean the sae-lens release gemma-scope-2b-pt-res"):
        load_sae("gemma-scope-2b-pt-rs/layer_12/width_16k/average_l0_82")


def write_sparsify(folder: Path, sae: TopKSAE, **cfg_extra: object) -> None:
    folder.mkdir(parents=True)
    cfg = {"expansion_factor": 4, "normalize_decoder": True, "num_latents": 0, "k": sae.cfg.k,
           "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": sae.cfg.d_in, **cfg_extra}  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg))
    tensors = {"encoder.weight": sae.encoder.weight, "encoder.bias": sae.encoder.bias,
               "W_dec": sae.W_dec, "b_dec": sae.b_dec}  # fmt: skip
    save_file({n: t.detach().contiguous() for n, t in tensors.items()}, str(folder / "sae.safetensors"))
    (folder.parent / "config.json").write_text(
        json.dumps({"model": "EleutherAI/pythia-70m", "ctx_len": 2048})
    )


def test_load_sparsify_folder(tmp_path: Path) -> None:
    sae = make_sae(layer=None)
    write_sparsify(tmp_path / "sparsify-run" / "layers.4", sae)
    loaded = load_sae(tmp_path / "sparsify-run")
    assert isinstance(loaded, TopKSAE)
    assert loaded.hook_layer == 4 and loaded.cfg.model_name == "EleutherAI/pythia-70m" and loaded.cfg.k == 4
    x = torch.randn(7, 16)
    # sparsify's forward, written out: top k of relu(encoder(x - b_dec)), then W_dec rows + b_dec
    pre = torch.relu((x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias)
    acts, idx = pre.topk(4)
    expected = (acts[..., None] * sae.W_dec[idx]).sum(1) + sae.b_dec
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(x), expected)
        torch.testing.assert_close(loaded.reconstruct(x), sae.reconstruct(x))

    # a sparsify transcoder (issue 28): TopK on x itself (no b_dec: it is in the output space)
    write_sparsify(tmp_path / "transcoder" / "layers.1", sae, transcode=True)
    coder = load_sae(tmp_path / "transcoder" / "layers.1")
    assert isinstance(coder, Transcoder) and coder.hook_layer == 1 and coder.splice_site == "mlp"
    acts, idx = torch.relu(x @ sae.encoder.weight.T + sae.encoder.bias).topk(4)
    with torch.no_grad():
        torch.testing.assert_close(
            coder.reconstruct(x), (acts[..., None] * sae.W_dec[idx]).sum(1) + sae.b_dec
        )
    write_sparsify(tmp_path / "groupmax" / "layers.1", sae, transcode=True, activation="groupmax")
    with pytest.raises(SaeFormatError, match="TopK transcoders only"):
        load_sae(tmp_path / "groupmax" / "layers.1")


@pytest.mark.parametrize("arch", ["jumprelu", "standard", "gated"])
def test_load_sae_lens_folder_any_architecture(tmp_path: Path, arch: str) -> None:
    cls = {"jumprelu": sae_lens.JumpReLUSAE, "standard": sae_lens.StandardSAE, "gated": sae_lens.GatedSAE}[
        arch
    ]
    cfg_cls = {"jumprelu": sae_lens.JumpReLUSAEConfig, "standard": sae_lens.StandardSAEConfig,
               "gated": sae_lens.GatedSAEConfig}[arch]  # fmt: skip
    cfg = cfg_cls(d_in=16, d_sae=48, apply_b_dec_to_input=arch != "jumprelu")
    cfg.metadata.hook_name = "blocks.6.hook_resid_post"
    theirs = cls(cfg)
    randomize(theirs)
    if arch == "jumprelu":
        with torch.no_grad():
            theirs.threshold.abs_()
    theirs.save_model(tmp_path / arch)
    loaded = load_sae(tmp_path / arch)
    # a plain jumprelu folder is one of our classes (issue 28); the others stay behind the adapter
    assert isinstance(loaded, JumpReLUSAE if arch == "jumprelu" else SaeLensAdapter)
    assert loaded.cfg.d_in == 16 and loaded.cfg.d_sae == 48
    assert loaded.hook_layer == 6 and not loaded.skip_special_tokens and loaded.W_dec.shape == (48, 16)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        z = theirs.encode(x)
        assert (z > 0).any() and (z == 0).any()
        torch.testing.assert_close(loaded.encode(x), z)
        torch.testing.assert_close(loaded.decode(z), theirs.decode(z))
        torch.testing.assert_close(loaded.reconstruct(x), theirs(x))
    assert load_sae(tmp_path / arch, dtype="float64").W_dec.dtype == torch.float64


def test_sae_lens_topk_becomes_our_model(tmp_path: Path) -> None:
    theirs = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=16, d_sae=48, k=5))
    randomize(theirs)
    theirs.save_model(tmp_path / "topk")
    loaded = load_sae(tmp_path / "topk")
    assert isinstance(loaded, TopKSAE) and loaded.cfg.k == 5 and loaded.hook_layer is None
    x = torch.randn(9, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(x), theirs(x))
        torch.testing.assert_close(loaded.encode(x), theirs.encode(x))


def test_release_calls_from_pretrained_with_first_slash_split(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_from_pretrained(release: str, sae_id: str, device: str = "cpu", dtype: str = "float32", **kw):
        calls.append((release, sae_id, device, dtype))
        cfg = sae_lens.JumpReLUSAEConfig(d_in=16, d_sae=32, apply_b_dec_to_input=False)
        cfg.metadata.hook_name = "blocks.12.hook_resid_post"
        return sae_lens.JumpReLUSAE(cfg)

    monkeypatch.setattr(sae_lens.SAE, "from_pretrained", fake_from_pretrained)
    sae = load_sae("gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82", dtype=torch.bfloat16)
    assert calls == [("gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82", "cpu", "bfloat16")]
    assert isinstance(sae, SaeLensAdapter) and sae.skip_special_tokens and sae.hook_layer == 12
    check_sae_fits(sae, 16)
    with pytest.raises(ValueError, match="reads 16-dimensional activations.*d_model = 2304"):
        check_sae_fits(sae, 2304)


def test_hook_layer_parsing() -> None:
    assert layer_from_hook_name("blocks.12.hook_resid_post") == 12
    assert layer_from_hook_name("blocks.13.hook_resid_pre") == 12
    assert layer_from_hook_name("model.layers.7") == 7 and layer_from_hook_name("layers.3") == 3
    assert layer_from_hook_name("blocks.4.hook_mlp_out") is None
    assert sae_hook_layer(make_sae(layer=9)) == 9


# ---- splice_fn -----------------------------------------------------------------------------------------
def test_splice_fn_reconstructs_and_keeps_special_positions() -> None:
    sae = make_sae(skip_special_tokens=True).double()
    h = torch.randn(2, 5, 16, requires_grad=True)
    ids = torch.tensor([[1, 7, 8, 2, 9], [1, 5, 5, 5, 5]])
    out = splice_fn(sae, ids, special_ids=[1, 2])(h)
    assert out.dtype == torch.float32 and out.shape == h.shape
    special = torch.isin(ids, torch.tensor([1, 2]))
    recon = sae.reconstruct(h.double()).float()
    assert torch.equal(out[special], h[special])
    torch.testing.assert_close(out[~special], recon[~special])
    out.sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0

    sae.cfg.skip_special_tokens = False
    torch.testing.assert_close(splice_fn(sae, ids, special_ids=[1, 2])(h), recon)
    torch.testing.assert_close(splice_fn(sae)(h), recon)
    sae.cfg.skip_special_tokens = True
    with pytest.raises(ValueError, match="same batch"):
        splice_fn(sae, ids[:, :3], special_ids=[1])(h)
