"""Foundation: runtime parsing, model access, splicing, truncated forward, atomic writes."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_model
from torch import nn

from lorasae.core import atomic, paths, runtime
from lorasae.model import hooks
from lorasae.model import load as models


def test_parse_device_and_dtype():
    assert runtime.parse_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert runtime.parse_device(None) == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            runtime.parse_device(0)
    with pytest.raises(ValueError, match="Unknown device"):
        runtime.parse_device("gpu-please")
    assert runtime.parse_dtype("bf16") is torch.bfloat16
    assert runtime.parse_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="Unknown dtype"):
        runtime.parse_dtype("int3")


@pytest.mark.parametrize(
    "text,expected",
    [("2_000_000_000", 2_000_000_000), ("15000", 15000), ("15k", 15000), ("2e6", 2_000_000), (300, 300)],
)
def test_parse_count(text, expected):
    assert runtime.parse_count(text) == expected


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "abc", ""])
def test_parse_count_rejects(bad):
    with pytest.raises(ValueError):
        runtime.parse_count(bad)


def test_registry_and_errors():
    assert models.resolve_model_name("gemma") == "google/gemma-2-2b"
    assert models.resolve_model_name("llama") == "meta-llama/Llama-3.2-1B"
    assert models.resolve_model_name("some-org/some-model") == "some-org/some-model"
    with pytest.raises(models.UnknownModelError, match="Unknown model 'gpt-17'"):
        models.resolve_model_name("gpt-17")
    assert models.model_key("google/gemma-2-2b") == "gemma-2-2b"
    assert models.model_key("gemma-2b") == "gemma"


def test_unreachable_hub_model_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.UnknownModelError, match="HF_TOKEN"):
        models.load_model("no-such-org/no-such-model-xyz", device="cpu")


def test_layer_access(tiny_model):
    assert models.num_layers(tiny_model) == 3
    assert models.d_model(tiny_model) == 32
    assert models.layer_module_name(tiny_model, 1) == "model.layers.1"
    models.check_layer(tiny_model, 2)
    with pytest.raises(models.LayerOutOfRangeError, match=r"3 decoder layers \(0 … 2\)"):
        models.check_layer(tiny_model, 3)
    with pytest.raises(models.LayerOutOfRangeError):
        models.check_layer(tiny_model, -1)


def test_layers_seen_through_peft(tiny_model):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(tiny_model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert models.decoder_layers(peft_model) is models.decoder_layers(tiny_model)


def test_splice_identity_leaves_logits_unchanged(tiny_model):
    ids = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        clean = tiny_model(ids).logits
        with hooks.splice(tiny_model, {1: lambda h: h}):
            spliced = tiny_model(ids).logits
    torch.testing.assert_close(spliced, clean, rtol=0, atol=0)


def test_splice_changes_output_and_is_removed(tiny_model):
    ids = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        clean = tiny_model(ids).logits
        with hooks.splice(tiny_model, {0: torch.zeros_like, 2: lambda h: 2 * h}):
            spliced = tiny_model(ids).logits
        after = tiny_model(ids).logits
    assert not torch.allclose(spliced, clean)
    torch.testing.assert_close(after, clean, rtol=0, atol=0)


def test_splice_handles_tuple_outputs():
    class Block(nn.Module):
        def forward(self, h):
            return (h + 1, "extra")

    out = hooks._replace_hidden(Block()(torch.zeros(2)), lambda h: h * 3)
    assert torch.equal(out[0], torch.full((2,), 3.0)) and out[1] == "extra"


def test_splice_sees_what_the_next_layer_gets(tiny_model):
    """The hook point is the residual stream after block L: the input of block L+1."""
    ids = torch.randint(0, 96, (1, 8))
    seen = {}
    layers = models.decoder_layers(tiny_model)
    handle = layers[2].register_forward_pre_hook(
        lambda m, args, kwargs: seen.update(h=kwargs.get("hidden_states", args[0] if args else None)),
        with_kwargs=True,
    )
    with torch.no_grad(), hooks.splice(tiny_model, {1: lambda h: h * 0 + 7}):
        tiny_model(ids)
    handle.remove()
    assert torch.all(seen["h"] == 7)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_truncated_forward_equals_full_forward_hidden_state(tiny_model, layer):
    ids = torch.randint(0, 96, (2, 10))
    with torch.no_grad():
        full = tiny_model(ids, output_hidden_states=True).hidden_states
        truncated = hooks.residual_at(tiny_model, ids, layer)
    # hidden_states[0] is the embedding output; the last entry has the final norm applied
    expected = full[layer + 1]
    if layer == models.num_layers(tiny_model) - 1:
        captured = {}
        h = models.decoder_layers(tiny_model)[layer].register_forward_hook(
            lambda m, a, o: captured.update(o=o)
        )
        with torch.no_grad():
            tiny_model(ids)
        h.remove()
        expected = captured["o"]
    torch.testing.assert_close(truncated, expected, rtol=0, atol=0)


def test_truncated_forward_runs_nothing_after_layer(tiny_model):
    calls = []
    layers = models.decoder_layers(tiny_model)
    handles = [layers[i].register_forward_hook(lambda *a, i=i: calls.append(i)) for i in range(3)]
    handles.append(tiny_model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head")))
    handles.append(tiny_model.model.norm.register_forward_hook(lambda *a: calls.append("norm")))
    with torch.no_grad():
        hooks.residual_at(tiny_model, torch.randint(0, 96, (1, 6)), 0)
    for handle in handles:
        handle.remove()
    assert calls == [0]
    # and the stop hook is gone: a normal forward still works
    assert tiny_model(torch.randint(0, 96, (1, 6))).logits.shape == (1, 6, 96)


def test_atomic_json_and_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "sub" / "x.json"
    atomic.atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}

    def broken(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_save_file(target, broken)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_read_json_names_corrupt_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    with pytest.raises(ValueError, match="bad.json is corrupt or truncated"):
        atomic.read_output_json(bad)
    with pytest.raises(FileNotFoundError):
        atomic.read_output_json(tmp_path / "missing.json")


def test_atomic_dir_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "folder"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
    with atomic.atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_append_csv_merges_columns(tmp_path):
    path = tmp_path / "r.csv"
    atomic.append_csv_row(path, {"a": 1, "b": 2})
    atomic.append_csv_row(path, {"a": 3, "c": 4})
    lines = path.read_text().splitlines()
    assert lines == ["a,b,c", "1,2,", "3,,4"]


def _append_rows(path: str, writer: int, n: int, start) -> None:
    start.wait(30)
    for i in range(n):
        atomic.append_csv_row(path, {"writer": writer, "i": i})


def test_concurrent_csv_appends_lose_no_row(tmp_path):
    """Two processes appending to one results file (two sweep shards on one root): every row survives."""
    import multiprocessing

    path = tmp_path / "data" / "results.csv"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_append_rows, args=(str(path), w, 150, start)) for w in range(2)]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    rows = path.read_text().splitlines()
    assert rows[0] == "writer,i"
    assert sorted(rows[1:]) == sorted(f"{w},{i}" for w in range(2) for i in range(150))


def test_paths_follow_spec(out_root):
    assert paths.sae_dir("gemma", "normal", 8, 64, 12, pct=10) == (
        out_root / "saved_saes/gemma/normal/expansion_8_L0_64-10pct/model.layers.12"
    )
    assert (
        paths.sae_curve_path("val_loss", "llama", "e2e") == out_root / "data/TopK/val_loss/llama/e2e_SAE.json"
    )
    assert paths.lora_json_path("CE_increase", "gemma", "expansion_8_L0_64", [13, 25], 64, 15000) == (
        out_root / "data/TopK/CE_increase/gemma/expansion_8_L0_64/peft_13-25_rank_64_CE_increase_15k.json"
    )
    assert (
        paths.lora_json_path("val_loss", "tiny", "t", [0, 3], 16, 300).name
        == "peft_0-3_rank_16_val_losses_0.3k.json"
    )
    assert paths.adapter_dir("gemma", "t", [0, 25], 64) == out_root / "saved_models/gemma/t/peft_0-25/rank_64"
    assert (
        paths.sanitize("gemma-scope-2b-pt-res/layer_12/width_16k")
        == "gemma-scope-2b-pt-res--layer_12--width_16k"
    )


def test_gemma_and_llama_both_splice():
    for arch in ("llama", "gemma2"):
        model = make_tiny_model(arch, n_layers=2)
        ids = torch.randint(0, 96, (1, 5))
        with torch.no_grad(), hooks.splice(model, {0: lambda h: h}):
            assert model(ids).logits.shape == (1, 5, 96)
