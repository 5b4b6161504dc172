"""The steering runner end to end on a tiny random model: corpus mining, alpha tuning record, the
evaluation's results JSON, table and histograms (no built-in world needed: negatives come from files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_char_tokenizer, make_tiny_model

from lorasae.core.atomic import atomic_write_json
from lorasae.core.paths import portable
from lorasae.core.records import read_record
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.steering.alpha_sweep import recorded_alpha, tune_alpha
from lorasae.steering.args import SteeringArgs
from lorasae.steering.context import SteeringContext
from lorasae.steering.evaluator import build_splits
from lorasae.steering.final_eval import run_steering_eval
from lorasae.steering.latent import resolve_latent
from lorasae.steering.negatives import BUILTIN_STANDINS, negatives_file
from lorasae.steering.positives_file import make_positive_examples
from lorasae.store import find_sae

VARIANT = "neg-6_negset-builtin_bs-8_len-48"  # the settings of `setup`'s args off the scripts' defaults


@pytest.fixture
def setup(out_root, tmp_path):
    torch.manual_seed(0)
    model = make_tiny_model("llama", n_layers=3)
    tok = make_char_tokenizer()
    sae = TopKSAE(SaeConfig(d_in=32, d_sae=64, k=8, hook_layer=1))
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=1, target_modules=["model.layers.2.mlp.down_proj"]))
    with torch.no_grad():  # a LoRA that changes something
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.eval()
    ctx = SteeringContext(peft_model, tok, sae, 1, "tiny-random", "random-sae", adapter=tmp_path / "adapter")
    # negatives from their cache files (the built-in world is not needed)
    for i, name in enumerate(BUILTIN_STANDINS.values()):
        examples = [f"{name} text number {j} with some words {i}" for j in range(6)]
        atomic_write_json(negatives_file("builtin", name, 6, 0), {"examples": examples, "requested": 6})
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n\n".join(
            f"Sentence {i} talks about topic {i % 7} at length. Another one follows here now."
            for i in range(40)
        )
    )
    args = SteeringArgs(
        model="tiny-random", negatives="builtin", num_negatives=6, batch_size=8, max_length=48
    )
    return ctx, args, corpus


def test_runner_end_to_end(setup, out_root, capsys):
    ctx, args, corpus = setup
    assert resolve_latent(ctx, 5) == 5
    with pytest.raises(ValueError, match="out of range"):
        resolve_latent(ctx, 64)

    path = make_positive_examples(ctx, str(corpus), from_corpus=True, num_examples=12, batch_size=8)
    data = json.loads(path.read_text())
    assert path == out_root / "eval/steering/datasets/latent_5.json"
    assert data["source"] == "corpus" and 4 <= len(data["examples"]) <= 12
    assert data["peak_activation"] == sorted(data["peak_activation"], reverse=True)

    record = tune_alpha(ctx, args, grid=[0.5, 2.0])
    entry = record["modes"]["multiplicative"]["splits"]["tuning"]
    assert [e["alpha"] for e in entry["evaluations"]] == [0.5, 2.0]
    assert entry["chosen_alpha"] in (0.5, 2.0) and entry["sets"]["medical"] == 6
    # named by the settings off the scripts' defaults
    alpha_record = read_record(out_root / f"eval/steering/results/latent_5_alpha__{VARIANT}.json")
    assert alpha_record.kind == "steering_alpha" and alpha_record.get("settings")["latent"] == 5
    # a single evaluation joins the record; the choice is re-made over all three
    record = tune_alpha(ctx, args, alpha=1.0)
    entry = record["modes"]["multiplicative"]["splits"]["tuning"]
    assert [e["alpha"] for e in entry["evaluations"]] == [0.5, 1.0, 2.0]
    chosen = entry["chosen_alpha"]
    # another mode is recorded beside it; evaluating without a tuning choice for a mode is an error
    additive = SteeringArgs(**{**vars(args), "mode": "additive"})
    with pytest.raises(ValueError, match="no tuning-split choice for additive"):
        run_steering_eval(ctx, additive)
    record = tune_alpha(ctx, additive, alpha=0.1)
    assert set(record["modes"]) == {"multiplicative", "additive"}

    results = run_steering_eval(ctx, args, per_set_histograms=False)  # alpha from the tuning record
    out = capsys.readouterr().out
    assert results["alpha"] == chosen and "LoRA − base Δ [90% CI]" in out and "POSITIVE CI" in out
    summary = results["summary"]
    assert set(summary) == {"positive", "law", "verse", "recipes", "biography", "negative (all)"}
    assert summary["negative (all)"]["n"] == 24
    for kind in ("base", "lora"):
        d = np.array(results["deltas"][kind]["positive"])
        ll = results["logliks"][kind]["positive"]
        u, s = np.array(ll["unsteered"]), np.array(ll["steered"])
        np.testing.assert_allclose(d, 100 * (s - u) / (u.max() - u.min()))
    iv = summary["positive"]["lora_minus_base"]
    diff = np.array(results["deltas"]["lora"]["positive"]) - np.array(results["deltas"]["base"]["positive"])
    assert iv["mean"] == pytest.approx(diff.mean()) and iv["low"] < iv["mean"] < iv["high"]
    figures = sorted(p.name for p in (out_root / f"eval/steering/distributions/5__{VARIANT}").iterdir())
    assert figures == ["all.pdf", "all.pdf.run.json", "all.png", "all.png.run.json"]
    # one result per SAE, adapter and latent, with its run record
    (written,) = (out_root / "eval/steering/results").glob("*/latent_5.json")
    figure = out_root / f"eval/steering/distributions/5__{VARIANT}" / "all.png"
    assert [i["path"] for i in read_record(figure).get("inputs")] == [portable(written)]
    assert results["histograms"] == [str(figure), str(figure.with_suffix(".pdf"))]
    assert written.parent.name.startswith("random-sae__adapter-") and written.parent.name.endswith(VARIANT)
    assert (
        read_record(written).kind == "steering_result" and read_record(written).get("settings")["latent"] == 5
    )


def test_base_and_lora_variants_differ_and_unsteered_matches(setup):
    ctx, _, _ = setup
    ids = torch.randint(4, 96, (1, 12))
    with torch.no_grad(), ctx.variant("base"):
        base = ctx.model(ids).logits
    with torch.no_grad(), ctx.variant("lora"):
        lora = ctx.model(ids).logits
    assert not torch.allclose(base, lora)
    with torch.no_grad():
        plain = ctx.model.get_base_model()
        with ctx.model.disable_adapter():
            ref = plain(ids).logits
    torch.testing.assert_close(base, ref)


def test_missing_inputs_give_clear_errors(setup, out_root):
    ctx, args, _ = setup
    ctx.latent = 7
    with pytest.raises(FileNotFoundError, match="make_positive_examples.py --neuron 7"):
        build_splits(ctx, args)
    with pytest.raises(FileNotFoundError, match="tune_alpha.py --neuron 7"):
        recorded_alpha(7, ctx, "multiplicative")
    with pytest.raises(FileNotFoundError, match="train_sae.py"):
        find_sae("tiny")


def test_llm_positive_examples_through_the_runner(setup, out_root, monkeypatch):
    from test_steering_llm import FakeLLM

    from lorasae.core.llm import LLMClient, LLMSettings

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    ctx, _, corpus = setup
    ctx.latent = 9
    replies = [
        (
            200,
            "1. Stars fuse hydrogen into helium.\n2. Cells divide by mitosis.\n3. Gravity bends light rays.",
        )
    ]
    replies += [(200, "1. Electrons orbit the atomic nucleus.\n2. Cells divide by mitosis.")]
    with FakeLLM(replies) as server:
        settings = LLMSettings(api_key="k", base_url=server.url, model="stand-in", timeout=10)
        path = make_positive_examples(
            ctx, str(corpus), llm=LLMClient(settings), num_examples=4, per_call=3, concurrency=1, batch_size=8
        )
        prompt = server.requests[0]["messages"][-1]["content"]
    data = json.loads(path.read_text())
    assert data["source"] == "llm" and data["llm_model"] == "stand-in" and data["llm_calls"] == 2
    assert data["examples"] == [
        "Stars fuse hydrogen into helium.",
        "Cells divide by mitosis.",
        "Gravity bends light rays.",
        "Electrons orbit the atomic nucleus.",
    ]
    # no description given: the corpus snippets where the latent fires most are the few-shot examples
    assert data["seed_examples"] and data["seed_examples"][0] in prompt
