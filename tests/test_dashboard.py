"""Feature dashboards (lorasae/dashboard/, eval/dashboard/run.py): the statistics, the change ranking and
the logits against independent computations; the Neuronpedia export against the neuronpedia client; the
script end to end on the built-in world through the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lorasae.dashboard.collect import HIST_EDGES, collect_contexts, collect_stats
from lorasae.dashboard.logits import direct_logits
from lorasae.dashboard.ranking import LatentChoice, most_changed, parse_latents, top_overlap
from lorasae.sae import SaeConfig, TopKSAE
from tests.conftest import make_tiny_model

LAYER = 1
SPECIAL = (0, 1, 2)  # the fixture tokenizer's PAD, BOS, EOS


def _chunks(n: int = 10, t: int = 24, seed: int = 0) -> torch.Tensor:
    ids = torch.randint(3, 96, (n, t), generator=torch.Generator().manual_seed(seed))
    ids[:, 0] = 1  # BOS
    ids[3, 9] = 2  # an EOS inside a chunk
    return ids


def _sae(seed: int = 0, d_sae: int = 64, k: int = 4) -> TopKSAE:
    torch.manual_seed(seed)
    return TopKSAE(SaeConfig(d_in=32, d_sae=d_sae, k=k, hook_layer=LAYER), fast=False).eval()


def _independent_acts(model, sae, ids: torch.Tensor) -> np.ndarray:
    """[N, T, n] activations from the model's own hidden_states output (no hooks), special tokens zeroed."""
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[LAYER + 1]
        acts = sae.encode(hidden).clamp(min=0).numpy()
    acts[np.isin(ids.numpy(), SPECIAL)] = 0.0
    return acts


# --- statistics, ranking, logits -------------------------------------------------------------------


def test_density_histogram_and_top_sequences_match_an_independent_numpy_computation():
    model, sae, ids = make_tiny_model("llama"), _sae(), _chunks()
    stats = collect_stats(model, sae, LAYER, ids, batch_size=3, special=SPECIAL, n_top=4, progress=False)
    acts = _independent_acts(model, sae, ids)
    n_tokens = int((~np.isin(ids.numpy(), SPECIAL)).sum())
    flat = acts.reshape(-1, acts.shape[-1])
    assert stats.num_tokens == n_tokens == 10 * 24 - 10 - 1
    np.testing.assert_allclose(stats.frequency, (flat > 0).sum(0) / n_tokens)
    np.testing.assert_allclose(stats.sums, flat.sum(0), rtol=1e-5)
    active = (flat > 0).sum(0)
    np.testing.assert_allclose(
        stats.mean_active[active > 0], flat.sum(0)[active > 0] / active[active > 0], rtol=1e-5
    )
    assert (stats.mean_active[active == 0] == 0).all()
    for latent in range(flat.shape[1]):
        values = flat[:, latent][flat[:, latent] > 0]
        clipped = np.clip(np.log10(values), HIST_EDGES[0] + 1e-9, HIST_EDGES[-1] - 1e-9)
        np.testing.assert_array_equal(stats.hist[latent], np.histogram(clipped, HIST_EDGES)[0])
        seq_max = acts[:, :, latent].max(1)
        order = np.argsort(-seq_max, kind="stable")[:4]
        expect = [int(s) for s in order if seq_max[s] > 0]
        np.testing.assert_allclose(stats.top_values[: len(expect), latent], seq_max[expect], rtol=1e-5)
        assert set(stats.top_seqs[: len(expect), latent]) == set(expect) or np.allclose(
            np.sort(seq_max[stats.top_seqs[: len(expect), latent]]), np.sort(seq_max[expect])
        )  # equal maxima may come in either order
        for rank, seq in enumerate(stats.top_seqs[: len(expect), latent]):
            assert acts[seq, stats.top_pos[rank, latent], latent] == pytest.approx(
                stats.top_values[rank, latent], rel=1e-5
            )


def test_contexts_are_the_windows_around_each_top_maximum_with_its_activations():
    model, sae, ids = make_tiny_model("llama"), _sae(), _chunks()
    stats = collect_stats(model, sae, LAYER, ids, batch_size=4, special=SPECIAL, n_top=3, progress=False)
    latents = [int(i) for i in np.argsort(-stats.counts)[:3]]
    contexts = collect_contexts(
        model, sae, LAYER, ids, stats, latents, batch_size=2, special=SPECIAL, left=5, right=2
    )
    acts = _independent_acts(model, sae, ids)
    for latent in latents:
        assert 1 <= len(contexts[latent]) <= 3
        for rank, c in enumerate(contexts[latent]):
            pos = int(stats.top_pos[rank, latent])
            lo = max(0, pos - 5)
            assert c.token_ids == ids[c.seq, lo : pos + 3].tolist()
            np.testing.assert_allclose(c.values, acts[c.seq, lo : pos + 3, latent], atol=1e-4)
            assert c.values[c.position] == pytest.approx(stats.top_values[rank, latent], abs=1e-4)


def test_changed_ranking_is_the_largest_log_ratio_of_firing_counts():
    sae, ids = _sae(d_sae=48), _chunks(12)
    base = collect_stats(make_tiny_model("llama", seed=0), sae, LAYER, ids, 4, SPECIAL, 5, progress=False)
    other = collect_stats(make_tiny_model("llama", seed=1), sae, LAYER, ids, 4, SPECIAL, 5, progress=False)
    a = (_independent_acts(make_tiny_model("llama", seed=0), sae, ids) > 0).sum((0, 1))
    b = (_independent_acts(make_tiny_model("llama", seed=1), sae, ids) > 0).sum((0, 1))
    score = np.abs(np.log2((b + 1) / (a + 1)))
    chosen = most_changed(base, other, 6)
    assert sorted(score[chosen], reverse=True) == pytest.approx(sorted(score, reverse=True)[:6])
    assert list(score[chosen]) == sorted(score[chosen], reverse=True)  # highest first
    latent = chosen[0]
    sa, sb = base.top_set(latent), other.top_set(latent)
    assert top_overlap(base, other, latent) == pytest.approx(len(sa & sb) / len(sa | sb))
    assert top_overlap(base, base, latent) in (1.0, None)


def test_latents_flag_takes_ids_changed_and_frequent_and_names_what_is_wrong():
    assert parse_latents("3, 17,changed:5") == LatentChoice((3, 17), changed=5)
    assert parse_latents("frequent:4") == LatentChoice((), frequent=4)
    for bad, says in (
        ("x", "'x' is not a latent id"),
        ("", "names no latent"),
        ("changed:", "is not a latent"),
    ):
        with pytest.raises(ValueError, match=says):
            parse_latents(bad)
    sae, ids = _sae(), _chunks()
    stats = collect_stats(make_tiny_model("llama"), sae, LAYER, ids, 4, SPECIAL, 2, progress=False)
    with pytest.raises(ValueError, match="out of range; the SAE has 64"):
        LatentChoice((64,)).resolve(64, stats, None)
    with pytest.raises(ValueError, match="needs an adapter"):
        LatentChoice(changed=3).resolve(64, stats, None)
    reasons = LatentChoice((5,), frequent=3).resolve(64, stats, None)
    frequent = list(reasons)
    assert frequent[0] == 5 and len(frequent) == 4 and 5 not in frequent[1:]
    assert list(reasons.values()) == ["listed", "frequent #1", "frequent #2", "frequent #3"]
    rest = [i for i in range(64) if i != 5]
    assert [stats.counts[i] for i in frequent[1:]] == sorted((stats.counts[i] for i in rest), reverse=True)[
        :3
    ]


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_logits_are_the_unembedding_of_the_norm_scaled_decoder_row(arch):
    model, sae = make_tiny_model(arch), _sae()
    with torch.no_grad():  # a non-trivial final norm scale
        model.model.norm.weight.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
    gamma = model.model.norm.weight.detach() + (1.0 if arch == "gemma2" else 0.0)  # Gemma: 1 + w
    got = direct_logits(model, sae.W_dec, [3, 7], k=5)
    for latent in (3, 7):
        expect = (model.lm_head.weight.detach() @ (gamma * sae.W_dec[latent].detach())).numpy()
        top = np.argsort(-expect)[:5]
        bottom = np.argsort(expect)[:5]
        assert [i for i, _ in got[latent].top] == top.tolist()
        assert [i for i, _ in got[latent].bottom] == bottom.tolist()
        np.testing.assert_allclose([v for _, v in got[latent].top], expect[top], rtol=1e-4, atol=1e-5)


def test_tokens_that_are_parts_of_a_character_show_their_bytes(world_model):
    """A byte-level BPE token that decodes to U+FFFD shows as its bytes; the bytes rebuild the text."""
    import re

    from transformers import AutoTokenizer

    from lorasae.dashboard.features import token_text

    tokenizer = AutoTokenizer.from_pretrained(str(world_model))
    ids = tokenizer("ꙮ é", add_special_tokens=False)["input_ids"]
    shown = [token_text(tokenizer, i) for i in ids]
    assert all("\ufffd" not in s for s in shown) and any(s.startswith("<0x") for s in shown)
    rebuilt = b"".join(
        bytes(int(h, 16) for h in re.findall(r"<0x([0-9A-F]{2})>", s)) if s.startswith("<0x") else s.encode()
        for s in shown
    )
    assert rebuilt.decode() == "ꙮ é"


# --- end to end on the built-in world --------------------------------------------------------------

SCRIPT = Path(__file__).resolve().parent.parent / "eval" / "dashboard" / "run.py"


def _script():
    """eval/dashboard/run.py as a module (its main runs only under __main__)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("script_dashboard_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_help_says_how_changed_latents_are_chosen_and_the_context_cap(capsys):
    from lorasae.core.cli import parse

    with pytest.raises(SystemExit) as exit_info:
        parse(_script().DashboardArgs, ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    assert "changed:N" in text and "log2((n_LoRA + 1) / (n_base + 1))" in text and "at most 100" in text


def _fixture_argv(world_model) -> list[str]:
    """The `dashboard` fixture's command line."""
    argv = ["--model", str(world_model), "--device", "cpu", "--dataset", "builtin", "--num_tokens", "2048"]
    argv += ["--ctx_len", "64", "--latents", "0,changed:3", "--contexts", "6", "--export", "neuronpedia"]
    return [*argv, "--progress", "false"]


@pytest.fixture(scope="module")
def dashboard(world_model, tmp_path_factory):
    """An SAE and a rank-2 adapter saved where train_sae.py / train_lora.py would, then the script with no
    SAE or adapter flags (the store finds both); returns (output folder, root, SAE, adapter folder)."""
    import os

    cli = _script().cli
    from lorasae.core.paths import adapter_dir, sae_dir, sae_tag
    from lorasae.lora.adapters import attach_lora
    from lorasae.model.defaults import default_k
    from lorasae.model.load import d_model, load_model, num_layers

    root = tmp_path_factory.mktemp("dashboard")
    before = os.environ.get("LORASAE_ROOT")
    os.environ["LORASAE_ROOT"] = str(root)
    try:
        model, _ = load_model(str(world_model), device="cpu")
        d, n = d_model(model), num_layers(model)
        k = default_k(d)
        torch.manual_seed(0)
        sae = TopKSAE(SaeConfig(d_in=d, d_sae=8 * d, k=k, hook_layer=1), fast=False).eval()
        sae.save(sae_dir(world_model.name, "normal", 8, k, 1))
        peft_model = attach_lora(model, layers=list(range(n)), rank=2)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.2, generator=torch.Generator().manual_seed(0))
        adapter = adapter_dir(world_model.name, sae_tag(8, k), list(range(n)), 2)
        peft_model.save_pretrained(str(adapter))
        assert cli(_fixture_argv(world_model)) == 0
        (out,) = (root / "eval" / "dashboard" / world_model.name / f"expansion_8_L0_{k}").glob(
            "peft_0-1_rank_2-*"
        )
        yield out, root, sae, adapter
    finally:
        if before is None:
            os.environ.pop("LORASAE_ROOT", None)
        else:
            os.environ["LORASAE_ROOT"] = before


def test_script_writes_an_index_a_page_per_latent_the_data_and_its_record(dashboard, world_model):
    from lorasae.core.records import read_record
    from lorasae.model.data import load_token_split
    from lorasae.model.load import load_model, special_token_ids

    out, _, _, adapter = dashboard
    data = json.loads((out / "data.json").read_text())
    ids = [r["index"] for r in data["latents"]]
    assert ids[0] == 0 and len(ids) == 4 and len(set(ids)) == 4
    assert [r["chosenAs"] for r in data["latents"]] == ["listed", "changed #1", "changed #2", "changed #3"]
    index = (out / "index.html").read_text()
    for i in ids:
        assert f'href="latent_{i}.html"' in index and (out / f"latent_{i}.html").is_file()
    for record in data["latents"]:
        assert set(record) == {"index", "chosenAs", "base", "lora", "change"}
        for v in ("base", "lora"):
            feature = record[v]
            assert len(feature["activations"]) <= 6 and len(feature["topLogits"]) == 10
            for act in feature["activations"]:
                assert len(act["tokens"]) == len(act["values"]) <= 16 + 4 + 1 and max(act["values"]) > 0
        change = record["change"]
        assert change["frequencyBase"] == record["base"]["density"]
        assert change["frequencyLora"] == record["lora"]["density"]
    scores = [r["change"]["score"] for r in data["latents"][1:]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0  # the adapter changes something
    tokenizer = load_model(str(world_model))[1]
    chunks = load_token_split("builtin", tokenizer, 64, 2048, 42).val
    assert chunks.shape == (32, 64)  # BOS, EOS and PAD are not counted as tokens
    assert data["num_tokens"] == int((~torch.isin(chunks, torch.tensor(special_token_ids(tokenizer)))).sum())
    rec = read_record(out)
    assert (
        rec is not None
        and rec.kind == "dashboard"
        and rec.get("adapter") == str(adapter.relative_to(dashboard[1]))
    )
    assert rec.get("latents") == ids and rec.get("sae_digest") and rec.get("model_digest")
    page = (out / f"latent_{ids[1]}.html").read_text()
    assert 'id="change"' in page and "Base model" in page and "LoRA model" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # opens offline


def test_a_moved_output_root_finds_its_dashboards_done_and_leaves_them(
    dashboard, world_model, tmp_path, monkeypatch, capsys
):
    """The run record names the SAE and the adapter relative to the output root: the root moved elsewhere
    (copied here: the fixture is shared), the same command is an identical rerun and is skipped."""
    import shutil
    import time

    out, root, _, _ = dashboard
    moved = tmp_path / "moved_root"
    shutil.copytree(root, moved)
    monkeypatch.setenv("LORASAE_ROOT", str(moved))
    out_moved = moved / out.relative_to(root)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out_moved.rglob("*")) if p.is_file()}
    capsys.readouterr()
    time.sleep(0.01)
    assert _script().cli(_fixture_argv(world_model)) == 0
    printed = capsys.readouterr().out
    assert f"dashboard: {out_moved.relative_to(moved)} exists for these settings" in printed
    assert {
        p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out_moved.rglob("*")) if p.is_file()
    } == before


def test_neuronpedia_export_is_exactly_what_the_neuronpedia_client_uploads(dashboard, monkeypatch):
    """Rebuild each exported feature as neuronpedia 1.2.1's Feature/Activation/Logit, let the client's
    FeatureRequest.upload_batch make its payload (the request captured, nothing sent): same JSON."""
    from neuronpedia.np_activation import Activation
    from neuronpedia.np_feature import Feature, Logit
    from neuronpedia.requests.feature_request import FeatureRequest

    out = dashboard[0]
    files = sorted((out / "neuronpedia").glob("*/batch-*.json"))
    assert [f.parent.name for f in files] == ["base", "lora"]
    sent = []
    monkeypatch.setattr(FeatureRequest, "send_request", lambda self, **kw: sent.append(kw["json"]))
    for path in files:
        ours = json.loads(path.read_text())
        features = [
            Feature(
                modelId=ours["modelId"],
                source=ours["source"],
                index=f["index"],
                density=f["density"],
                top_logits=[Logit(**x) for x in f["topLogits"]],
                bottom_logits=[Logit(**x) for x in f["bottomLogits"]],
                explanations=[],
                activations=[
                    Activation(modelId=ours["modelId"], source=ours["source"], index=f["index"], **a)
                    for a in f["activations"]
                ],
            )
            for f in ours["features"]
        ]
        FeatureRequest(api_key="offline-test").upload_batch(ours["modelId"], ours["source"], features)
        assert sent[-1] == ours
    assert sent[0]["modelId"] != sent[1]["modelId"] and sent[0]["source"] == sent[1]["source"]


def test_base_only_dashboard_with_adapter_none_has_no_lora_column(dashboard, world_model, tmp_path):
    from lorasae.core.cli import parse
    from lorasae.dashboard.run import DashboardArgs, run_dashboard

    root = dashboard[1]
    argv = ["--model", str(world_model), "--device", "cpu", "--dataset", "builtin", "--num_tokens", "1024"]
    argv += ["--ctx_len", "64", "--adapter", "none", "--latents", "frequent:2", "--out", str(tmp_path / "d")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORASAE_ROOT", str(root))
        out = run_dashboard(parse(DashboardArgs, [*argv, "--progress", "false"]))
    data = json.loads((out / "data.json").read_text())
    assert data["adapter"] is None and all(set(r) == {"index", "chosenAs", "base"} for r in data["latents"])
    assert "(LoRA)" not in (out / "index.html").read_text() and (out / "run.json").is_file()
    with pytest.raises(ValueError, match="needs an adapter"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LORASAE_ROOT", str(root))
            run_dashboard(parse(DashboardArgs, [*argv[:-4], "--latents", "changed:2", "--progress", "false"]))


def test_bad_flags_fail_before_anything_loads():
    from lorasae.core.cli import parse
    from lorasae.dashboard.run import DashboardArgs, check_args

    for flags, says in (
        (["--contexts", "0"], "--contexts must be 1"),
        (["--contexts", "101"], "--contexts must be 1"),
        (["--export", "csv"], "--export must be 'neuronpedia'"),
        (["--latents", "foo"], "'foo' is not a latent id"),
    ):
        with pytest.raises(ValueError, match=says):
            check_args(parse(DashboardArgs, flags))


# --- in a real browser: headless Chromium opens the pages from disk --------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium (`make browser` installs it); missing under CI (CI=true) is a failure."""
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not on PATH: run `make browser` (apt-get install -y --no-install-recommends chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _browse(chromium: str, page: Path, *flags: str) -> tuple[str, list[str]]:
    """Run headless Chromium on `page` (a file URL); returns (stdout, the console messages it logged)."""
    import subprocess

    run = subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
         "--enable-logging=stderr", "--v=0", *flags, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


def _screenshot(chromium: str, page: Path, png: Path, size: str) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    _, console = _browse(chromium, page, f"--screenshot={png}", f"--window-size={size}")
    return np.asarray(Image.open(png).convert("RGB")).astype(int), console


def test_console_check_sees_a_page_that_logs_an_error(chromium, tmp_path):
    """The console check below is not vacuous: a page with a script error is caught."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><script>console.error("marker"); missing();</script></body></html>'
    )
    _, console = _browse(chromium, page, "--dump-dom")
    assert any("marker" in line for line in console) and any(
        "missing is not defined" in line for line in console
    )


def test_browser_opens_index_and_latent_page_from_disk_without_console_errors(chromium, dashboard, tmp_path):
    out = dashboard[0]
    data = json.loads((out / "data.json").read_text())
    latent = data["latents"][1]["index"]  # the most changed latent: contexts on the LoRA side at least

    dom, console = _browse(chromium, out / "index.html", "--dump-dom")
    assert console == []
    assert (
        dom.count('<tr><td class="l"><a href="latent_') == len(data["latents"]) and 'id="latent-table"' in dom
    )
    dom, console = _browse(chromium, out / f"latent_{latent}.html", "--dump-dom")
    assert console == []
    assert 'id="change"' in dom and dom.count('class="panel"') == 2 and dom.count('class="logits"') == 2
    shown = sum(len(data["latents"][1][v]["activations"]) for v in ("base", "lora"))
    assert 0 < dom.count('class="context"') == shown and 'class="histogram"' in dom

    for name, size in (("index.html", "1200,500"), (f"latent_{latent}.html", "1280,1100")):
        pixels, console = _screenshot(chromium, out / name, tmp_path / f"{Path(name).stem}.png", size)
        assert console == []
        assert pixels.shape[:2] == tuple(int(x) for x in size.split(","))[::-1]
        ink = (pixels.sum(-1) < 3 * 200).mean()  # text, lines and bars
        assert ink > 0.005, f"{name}: the screenshot is (nearly) blank"
        if name != "index.html":  # orange: token shading and histogram bars
            r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
            assert ((r > 200) & (g > 60) & (g < 190) & (b < 120)).sum() > 500
