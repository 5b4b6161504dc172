"""Dark-matter pipeline on the small built-in world: the SAEInfo against the model run independently, the
downstream CE against `mean_ce`, and `run.py` end to end (width sweep, k sweep, base vs LoRA)."""

import json

import pytest
import torch
import torch.nn.functional as F

from lorasae.core.records import read_record
from lorasae.darkmatter.downstream import component_ce
from lorasae.darkmatter.info import build_sae_info
from lorasae.darkmatter.linear import LinearMap
from lorasae.model.ce import mean_ce
from lorasae.model.hooks import residual_at
from lorasae.model.load import load_model, special_token_ids
from lorasae.sae import SaeConfig, TopKSAE, splice_fn

LAYER = 1


@pytest.fixture(scope="module")
def world(small_world):
    model, tokenizer = load_model(str(small_world), device="cpu")
    from lorasae.model.data import load_token_split

    chunks = load_token_split("builtin", tokenizer, ctx_len=64, num_val_tokens=64 * 12, seed=0).val
    return model, tokenizer, chunks


def _sae(width: int = 128, k: int = 4, seed: int = 0, skip_special: bool = False) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SaeConfig(d_in=32, d_sae=width, k=k, hook_layer=LAYER, skip_special_tokens=skip_special))
    with torch.no_grad():
        sae.encoder.bias.normal_(0, 0.1)
    return sae.eval()


def test_sae_info_holds_the_models_activations_latents_and_losses(world):
    model, tokenizer, chunks = world
    sae = _sae()
    info = build_sae_info(
        model, sae, chunks, LAYER, special_token_ids(tokenizer), batch_size=5, progress=False
    )
    with torch.no_grad():
        h = residual_at(model, chunks, LAYER)
        logits = model(input_ids=chunks).logits
    keep = ~torch.isin(chunks, torch.tensor(special_token_ids(tokenizer)))
    assert (~keep).any() and len(info) == int(keep.sum())  # BOS/EOS positions are left out
    torch.testing.assert_close(info.x, h[keep], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(info.x_hat, sae.reconstruct(h[keep]), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(info.dense_latents(), sae.encode(h[keep]), rtol=1e-4, atol=1e-5)
    ce = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), chunks[:, 1:].reshape(-1), reduction="none"
    )
    expected = torch.full(chunks.shape, float("nan"))
    expected[:, :-1] = ce.reshape(len(chunks), -1)
    torch.testing.assert_close(info.loss, expected[keep], rtol=1e-4, atol=1e-5, equal_nan=True)
    rows, cols = torch.nonzero(keep, as_tuple=True)
    assert torch.equal(info.chunk.long(), rows) and torch.equal(info.position.long(), cols)
    assert torch.equal(info.token_ids, chunks[keep])
    assert (info.l0 <= 4).all()


def test_component_ce_with_a_zero_map_is_the_plain_splice_and_the_original(world):
    model, tokenizer, chunks = world
    zero = LinearMap(torch.zeros(32, 32, dtype=torch.float64), torch.zeros(32, dtype=torch.float64))
    special = special_token_ids(tokenizer)
    sae = _sae(skip_special=True)  # special positions keep x: x̂ + (e − 0) is x everywhere
    ce = component_ce(model, sae, zero, chunks, LAYER, special, batch_size=4)
    assert ce["original"] == pytest.approx(mean_ce(model, chunks, 4), rel=1e-6)
    spliced = mean_ce(model, chunks, 4, lambda ids: {LAYER: splice_fn(sae, ids, special)})
    assert ce["sae"] == pytest.approx(spliced, rel=1e-6)
    assert ce["sae+linear"] == pytest.approx(spliced, rel=1e-6)
    assert ce["sae+nonlinear"] == pytest.approx(ce["original"], rel=1e-5)
    assert ce["sae+nonlinear % gap closed"] == pytest.approx(100, abs=1e-3)
    assert ce["sae"] > ce["original"]


def _planned(model, expansion: int, k: int):
    """Where the analyses' SAE of this width and k is (`darkmatter.plan.sae_config`: the demo's budget on
    the built-in data, named in the folder for this model folder, whose default data is another)."""
    from lorasae.darkmatter.plan import sae_config
    from lorasae.train.state import planned_dir

    return planned_dir(sae_config(str(model), LAYER, expansion, k, dataset="builtin"))


def test_run_end_to_end_on_the_small_world(small_world, out_root):
    """run.py over three widths at k=4, a k sweep, and base vs an adapter on layers 0-1: every number
    and figure written, the LoRA model's activations at layer 1 differ from the base model's."""
    from lorasae.core.cli import parse
    from lorasae.core.fingerprint import file_digest
    from lorasae.core.paths import dark_matter_dir, dark_matter_plots_dir, dark_matter_results_path, portable
    from lorasae.darkmatter.cli import DarkMatterArgs, main, result_variant
    from lorasae.lora.adapters import attach_lora

    key = small_world.name
    for width_x, k in ((1, 4), (2, 4), (4, 4), (4, 2)):
        # the ×2 SAE records that it read 4 validation and 40 training chunks of 64 tokens
        records = {"train_tokens": 40 * 64, "ctx_len": 64, "num_val_tokens": 4 * 64} if width_x == 2 else {}
        _sae(32 * width_x, k, seed=width_x + k).save(_planned(small_world, width_x, k), **records)
    fresh, _ = load_model(str(small_world), device="cpu")
    peft_model = attach_lora(fresh, layers=[0, 1], rank=2)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    adapter = out_root / "adapter"
    peft_model.save_pretrained(str(adapter))
    argv = ["--model", str(small_world), "--dataset", "builtin", "--device", "cpu", "--layer", "1",
            "--expansions", "1", "2", "4", "--k", "4", "--ks", "2", "--k_expansion", "4", "--train_missing", "false",
            "--lora", str(adapter), "--num_tokens", "3000", "--pursuit_tokens", "200", "--ce_chunks", "4",
            "--error_sae_steps", "20"]  # fmt: skip
    summary = main(parse(DarkMatterArgs, argv))
    # named by the settings off the script's defaults: a run with other settings never replaces it
    variant = result_variant(parse(DarkMatterArgs, argv))
    results = dark_matter_results_path(key, variant)
    assert "tokens-3000" in variant
    assert results.name == f"results__{variant}.json" and not (dark_matter_dir(key) / "results.json").exists()
    written = json.loads(results.read_text())
    record = read_record(results)  # what made it, written last
    assert record.get("variant") == variant
    assert (
        record.kind == "dark_matter" and record.get("adapter") and len(record.get("sae_sources")) == 4
    )  # 3 widths, k 2 and 4 (x4 shared)
    assert written["power_laws"] == summary["power_laws"]
    assert [r["width"] for r in written["width_sweep"]] == [32, 64, 128]
    assert sorted(r["k"] for r in written["k_sweep"]) == [2, 4]
    for row in written["width_sweep"] + written["k_sweep"]:
        assert row["linear_fvu"] + row["nonlinear_fvu"] == pytest.approx(row["fvu"], rel=0.15)
        assert 0 < row["nonlinear_fvu"] <= row["fvu"] + 1e-6
    matrix = torch.tensor(written["per_token_r2"]["matrix"])
    assert matrix.shape == (3, 3) and torch.allclose(matrix.diagonal(), torch.ones(3), atol=1e-6)
    error_saes = written["error_saes"]
    assert {r["target"] for r in error_saes["results"]} == {"linear", "nonlinear"}
    for r in error_saes["results"]:  # trained by train_sae on f(x), saved apart from the normal SAEs
        assert f"/modified/{r['target']}_error__" in r["folder"] and 0 < r["test_fvu"] and 0 < r["val_fvu"]
    from lorasae.train.config import TrainSaeConfig
    from lorasae.train.modification import load_modification

    cfg = TrainSaeConfig(model=str(small_world), layer=LAYER, hidden_modification="nonlinear_error",
                         modification_file=error_saes["map_file"])  # fmt: skip
    mod = load_modification(cfg, 32)  # the file holds W*, b and names the SAE it splits
    assert mod.meta["sae"] == str(_planned(small_world, 2, 4)) and mod.skip_special
    base, lora = written["base_vs_lora"]["base"], written["base_vs_lora"]["lora"]
    assert base["source"] == lora["source"] == str(_planned(small_world, 4, 4))
    assert lora["adapter"] == str(adapter) and base["fvu"] != lora["fvu"]
    assert base["ce"]["original"] != lora["ce"]["original"]
    infos = list((dark_matter_dir(key) / "info").glob("*.safetensors"))
    assert len(infos) == 5  # 3 widths + the k=2 SAE + the LoRA model's record
    stems = {p.stem for p in dark_matter_plots_dir(key, variant=variant).glob("*.png")}
    assert stems == {
        "decomposition",
        "per_token_r2",
        "downstream_ce",
        "error_saes",
        "synthetic",
        "base_vs_lora",
    }
    assert written["figures"] == [str(dark_matter_plots_dir(key, variant=variant) / f"{stem}.{fmt}")
                                  for stem in ("decomposition", "per_token_r2", "downstream_ce", "error_saes",
                                               "synthetic", "base_vs_lora") for fmt in ("png", "pdf")]  # fmt: skip
    for figure in written["figures"]:  # drawn once the results were written: each record names them
        assert read_record(figure).get("inputs") == [
            {"path": portable(results), "digest": file_digest(results)}
        ]
    report = results.with_suffix(".md").read_text()
    assert "## power laws" in report and "Over every sweep: vector R²" in report
    # the analysed tokens start after the 44 chunks the ×2 SAE read; a random split; contexts of 64 < 256
    assert written["tokens"]["start"] == 44 and written["tokens"]["count"] == 47 + 4
    assert written["split"] == {"kind": "random", "seed": 42, "train_fraction": 0.5}
    assert written["downstream_protocol"] == "all_positions" and "protocol all_positions" in report
    assert all(r["tokens"] == written["tokens"] and r["split"] == "random" for r in written["width_sweep"])


def test_missing_sae_says_how_to_train_it(small_world, out_root):
    from lorasae.darkmatter.plan import our_sae_sources

    with pytest.raises(FileNotFoundError, match="train_sae.py"):
        our_sae_sources(str(small_world), LAYER, expansions=(2,), k=4)


class _DenseOnly(torch.nn.Module):
    """An SAE seen only through encode/decode (as sae_lens's JumpReLU SAEs are): the dense path."""

    def __init__(self, sae: TopKSAE):
        super().__init__()
        self.inner, self.W_dec, self.cfg = sae, sae.W_dec, sae.cfg

    def encode(self, x):
        return self.inner.encode(x)

    def decode(self, z):
        return self.inner.decode(z)


def test_sae_info_of_a_dense_only_sae_matches_the_sparse_path(world, monkeypatch):
    import lorasae.darkmatter.info as info_module

    model, tokenizer, chunks = world
    sae = _sae()
    sparse = build_sae_info(model, sae, chunks[:4], LAYER, special_token_ids(tokenizer), progress=False)
    monkeypatch.setattr(info_module, "_ENCODE_ELEMENTS", 128 * 7)  # 7 tokens per encode call: many parts
    dense = build_sae_info(
        model, _DenseOnly(sae), chunks[:4], LAYER, special_token_ids(tokenizer), progress=False
    )
    torch.testing.assert_close(dense.x_hat, sparse.x_hat, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dense.dense_latents(), sparse.dense_latents(), rtol=1e-5, atol=1e-6)
    assert torch.equal(dense.l0, sparse.l0)


def test_auto_adapter_is_trained_when_missing_and_then_found(small_world, out_root, monkeypatch):
    """`--lora auto` for one of our SAEs with no adapter: train_lora runs once, and the adapter it saved is
    the one used (the lookup after training used to pass the SAE's path string where a ref belongs)."""
    import lorasae.lora.run as lora_run
    from lorasae.core.paths import adapter_dir, sae_dir
    from lorasae.darkmatter.cli import DarkMatterArgs, resolve_adapter

    key = small_world.name
    source = sae_dir(key, "normal", 4, 4, LAYER)
    _sae(128, 4).save(source)
    calls = []

    def fake_train_lora(cfg):  # what train_lora.py --save_model leaves behind, without the training
        calls.append(cfg)
        folder = adapter_dir(key, "expansion_4_L0_4", [0, 1], cfg.rank)
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")

    monkeypatch.setattr(lora_run, "main", fake_train_lora)
    args = DarkMatterArgs(model=str(small_world), layer=LAYER, rank=16)
    found = resolve_adapter(args, str(source))
    assert len(calls) == 1 and calls[0].sae == [str(source)] and calls[0].rank == 16
    assert found == str(adapter_dir(key, "expansion_4_L0_4", [0, 1], 16))
    assert resolve_adapter(args, str(source)) == found and len(calls) == 1  # found now: not trained again
