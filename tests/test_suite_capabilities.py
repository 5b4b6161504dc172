"""Which eval suite takes which dictionary (`lorasae.sae.capabilities`): every architecture × every suite
either runs the suite's use of the dictionary (dashboards encode a transcoder's MLP input) or is refused
in one line naming the suite and the architecture; the suites' entry points refuse through the store's load; SAE-Bench's offline evals run
end to end with a JumpReLU SAE (dense codes) and refuse a transcoder before any eval."""

from __future__ import annotations

import json

import pytest
import torch
from arch_helpers import ARCHITECTURES, make_dictionary
from conftest import make_char_tokenizer, make_tiny_model

from lorasae.evals.capabilities import check_suite, consumer, suite_names, takes, unsupported_reason
from lorasae.lora.trainer import sae_splices
from lorasae.model.ce import mean_ce
from lorasae.model.hooks import splice
from lorasae.sae.capabilities import ANY, ENCODING, RESIDUAL, UnsupportedArchitectureError, sae_input_at
from lorasae.sae.crosscoder import Crosscoder, CrosscoderConfig

pytestmark = pytest.mark.usefixtures("one_thread")

LAYER = 1
RESIDUAL_KINDS = ("topk", "relu", "batchtopk", "matryoshka", "jumprelu")


@pytest.fixture(scope="module")
def model_and_chunks():
    model = make_tiny_model("llama", n_layers=3)
    chunks = torch.randint(3, 96, (4, 12), generator=torch.Generator().manual_seed(1))
    return model, chunks


def _suite_use(suite: str, sae, model, chunks) -> None:
    """What `suite` does with the dictionary, on the tiny model: splice suites run their splice (the
    benchmarks through lm-eval's wrapper), reading suites encode the dictionary's input and decode."""
    if takes(suite) == ANY:
        clean = model(input_ids=chunks).logits
        with splice(model, sae_splices({LAYER: sae}, [])(chunks)):
            spliced = model(input_ids=chunks).logits
        if suite == "benchmarks":
            from lorasae.lmeval.wrapper import sae_spliced

            with sae_spliced(model, {LAYER: sae}, []):
                wrapped = model(input_ids=chunks).logits
            torch.testing.assert_close(wrapped, spliced)
        assert torch.isfinite(spliced).all() and not torch.allclose(spliced, clean)
        assert mean_ce(model, chunks, 2, sae_splices({LAYER: sae}, [])) > 0
        return
    x = sae_input_at(sae, model, chunks, LAYER)
    z = sae.encode(x)
    if suite == "dashboards":  # the dashboards' own encoding pass
        from lorasae.dashboard.collect import encode_batch

        torch.testing.assert_close(encode_batch(model, sae, LAYER, chunks, []), z.float())
    assert z.shape == (*x.shape[:-1], sae.W_dec.shape[0]) and sae.W_dec.shape[1] == x.shape[-1]
    skip = sae.skip_term(x) if hasattr(sae, "skip_term") else None  # a skip transcoder's linear term
    torch.testing.assert_close(sae.decode(z) + (0 if skip is None else skip), sae.reconstruct(x))
    if hasattr(sae, "encode_topk") and skip is None:  # Dark Matter's sparse path
        torch.testing.assert_close(sae.decode_topk(*sae.encode_topk(x)), sae.reconstruct(x))


@pytest.mark.parametrize("suite", suite_names())
@pytest.mark.parametrize("kind", ARCHITECTURES)
@torch.no_grad()
def test_every_suite_runs_each_architecture_or_refuses_it_in_one_line(model_and_chunks, kind, suite):
    model, chunks = model_and_chunks
    sae = make_dictionary(kind, 32, LAYER)
    if kind in RESIDUAL_KINDS or takes(suite) in (ANY, ENCODING):
        assert unsupported_reason(suite, sae) is None
        check_suite(suite, sae)
        _suite_use(suite, sae, model, chunks)
        return
    assert takes(suite) == RESIDUAL and kind.endswith("transcoder")
    with pytest.raises(UnsupportedArchitectureError) as err:
        check_suite(suite, sae, "some/folder")
    message = str(err.value)
    assert "\n" not in message and f"a {kind} dictionary" in message and suite in message.split(" does ")[0]
    assert "some/folder" in message and "MLP" in message


def test_a_crosscoder_is_refused_by_the_suites_that_read_one_layer():
    coder = Crosscoder(
        CrosscoderConfig(d_in=[32, 32], d_sae=64, k=4, sources=["l1", "l2"], hook_layers=[1, 2])
    )
    for suite in suite_names():
        if takes(suite) == ANY:
            assert unsupported_reason(suite, coder) is None
            continue
        with pytest.raises(
            UnsupportedArchitectureError, match=f"{suite} does not take a crosscoder .*several"
        ):
            check_suite(suite, coder)


def test_unknown_suite_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown suite 'sae_bench'.*train_lora, core, sparse_probing"):
        unsupported_reason("sae_bench", make_dictionary("topk", 32, LAYER))


@pytest.fixture
def saved(tmp_path, out_root):
    """A saved tiny model + character tokenizer, a JumpReLU SAE and a transcoder for its layer 1."""
    model_dir = tmp_path / "tinyrand"
    make_tiny_model("llama").save_pretrained(model_dir)
    make_char_tokenizer().save_pretrained(model_dir)
    folders = {
        k: make_dictionary(k, 32, LAYER).save(tmp_path / k / "model.layers.1")
        for k in ("jumprelu", "transcoder")
    }
    return {"model": str(model_dir), **{k: str(v) for k, v in folders.items()}}


def test_the_suites_entry_points_refuse_a_transcoder_through_the_store(saved):
    from lorasae.darkmatter.load import _load_model_and_sae
    from lorasae.store import external_ref, load_bundle

    with pytest.raises(UnsupportedArchitectureError, match="^dark_matter does not take a transcoder"):
        _load_model_and_sae(saved["model"], saved["transcoder"])
    with pytest.raises(UnsupportedArchitectureError, match="^steering does not take a transcoder"):
        load_bundle(saved["model"], [external_ref(saved["transcoder"], None)], suite=consumer("steering"))
    for suite in ("interp", "dashboards"):
        bundle = load_bundle(saved["model"], [external_ref(saved["transcoder"], None)], suite=consumer(suite))
        assert bundle.layer == LAYER and bundle.sae.splice_site == "mlp"


def test_saebench_runs_its_offline_evals_on_a_jumprelu_sae_and_refuses_a_transcoder(saved, tmp_path):
    from lorasae.core.cli import parse
    from lorasae.saebench.args import SaeBenchArgs
    from lorasae.saebench.run import run

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"the cat {i} sat on the mat and the dog ran far" for i in range(400)))

    def args(sae: str, evals: str) -> SaeBenchArgs:
        return parse(
            SaeBenchArgs,
            ["--device", "cpu", "--model", saved["model"], "--model_variant", "base", "--sae", sae,
             "--evals", evals, "--dataset", str(corpus), "--labelled_data", "builtin",
             "--train_set_size", "40", "--test_set_size", "20"],
        )  # fmt: skip

    with pytest.raises(UnsupportedArchitectureError, match="^SAE-Bench core does not take a transcoder"):
        run(args(saved["transcoder"], "core,autointerp"))
    offline = "core,sparse_probing,scr,tpp,absorption,ravel,unlearning"
    written = run(args(saved["jumprelu"], offline))
    assert set(written) == set(offline.split(",")) and all(p is None or p.exists() for p in written.values())


def test_dashboard_of_a_transcoder_shows_its_latents_on_the_mlp_input(world_model, out_root, tmp_path):
    from lorasae.core.cli import parse
    from lorasae.dashboard.run import DashboardArgs, run_dashboard

    folder = make_dictionary("transcoder", 32, 0).save(tmp_path / "tc")
    argv = ["--model", str(world_model), "--device", "cpu", "--dataset", "builtin", "--num_tokens", "512"]
    argv += ["--ctx_len", "64", "--sae", str(folder), "--adapter", "none", "--latents", "frequent:2"]
    out = run_dashboard(parse(DashboardArgs, [*argv, "--out", str(tmp_path / "d"), "--progress", "false"]))
    data = json.loads((out / "data.json").read_text())
    assert len(data["latents"]) == 2 and data["adapter"] is None
