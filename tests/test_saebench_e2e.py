"""lorasae.saebench end to end on tiny random models: the core eval against SAEs whose scores are known
exactly, absorption on a model built to represent first letters, autointerp against a local stand-in
judge server, every offline eval writing SAEBench's schema, and `run_eval.py`'s base and peft runs
(plus `get_peft_dict.py`) through the real loading path."""

from __future__ import annotations

import json
import string
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import make_char_tokenizer, make_tiny_model

from lorasae.core.cli import parse
from lorasae.core.records import read_record
from lorasae.saebench.absorption import AbsorptionEvalConfig, run_absorption
from lorasae.saebench.args import EVALS, SaeBenchArgs, result_variant
from lorasae.saebench.autointerp import AutoInterpEvalConfig, run_autointerp
from lorasae.saebench.comparison import HEADLINE, comparison_rows, gap_closed, load_results
from lorasae.saebench.core import CoreEvalConfig, run_core
from lorasae.saebench.datasets import token_chunks
from lorasae.saebench.load import (
    default_adapter,
    load_for_eval,
    merged_model,
    sae_identifier,
    save_peft_dict,
)
from lorasae.saebench.plan import selected_evals
from lorasae.saebench.run import run
from lorasae.saebench.schema import validate_eval_output
from lorasae.store import GEMMA_SCOPE_2B, find_sae

pytestmark = pytest.mark.usefixtures("one_thread")


class IdentitySae:
    """encode = identity, decode = identity: a perfect reconstruction."""

    def __init__(self, d: int):
        self.W_dec = torch.eye(d)
        self.cfg = {"d_in": d, "d_sae": d}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


class ZeroSae(IdentitySae):
    """decode = 0: the same as zero-ablating the layer."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(z)


def _corpus_file(tmp_path: Path, repeats: int = 8) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text(
        "\n\n".join(
            f"document {i}: the {w} sat on the mat." for i, w in enumerate(string.ascii_lowercase * repeats)
        )
    )
    return str(path)


def test_core_scores_are_exact_for_perfect_and_zero_saes(tmp_path, char_tokenizer):
    model = make_tiny_model("llama")
    tokens = token_chunks(_corpus_file(tmp_path), char_tokenizer, 32, 8, seed=0)
    cfg = CoreEvalConfig(
        batch_size_prompts=4, n_eval_reconstruction_batches=2, n_eval_sparsity_variance_batches=2
    )
    perfect = run_core(model, char_tokenizer, IdentitySae(32), 1, tokens, cfg, "identity")
    validate_eval_output(perfect)
    m = perfect["eval_result_metrics"]
    assert m["model_performance_preservation"]["ce_loss_score"] == pytest.approx(1.0, abs=1e-4)
    assert m["model_behavior_preservation"]["kl_div_score"] == pytest.approx(1.0, abs=1e-4)
    assert m["reconstruction_quality"]["explained_variance"] == pytest.approx(1.0, abs=1e-6)
    assert m["reconstruction_quality"]["cossim"] == pytest.approx(1.0, abs=1e-5)
    assert m["sparsity"]["l0"] == pytest.approx(32.0)
    assert m["token_stats"]["total_tokens_eval_reconstruction"] == 4 * 2 * 32
    assert len(perfect["eval_result_details"]) == 32
    cfg.exclude_special_tokens_from_reconstruction = False  # zero every position, as zero ablation does
    zero = run_core(model, char_tokenizer, ZeroSae(32), 1, tokens, cfg, "zero")["eval_result_metrics"]
    assert zero["model_performance_preservation"]["ce_loss_score"] == pytest.approx(0.0, abs=1e-4)
    assert zero["model_behavior_preservation"]["kl_div_score"] == pytest.approx(0.0, abs=1e-4)
    assert zero["reconstruction_quality"]["explained_variance"] < 0


def test_core_mse_is_saebench_normalised_and_the_per_token_squared_error_is_kept(tmp_path, char_tokenizer):
    """SAEBench's `mse` divides each token's ‖x − x̂‖² by the number of evaluated tokens of its batch; the
    plain mean over tokens is `squared_error_per_token`. By hand, with the zero SAE (x̂ = 0), the residual
    from Hugging Face's hidden states, and BOS/EOS/PAD left out."""
    model = make_tiny_model("llama")
    tokens = token_chunks(_corpus_file(tmp_path), char_tokenizer, 32, 8, seed=0)
    cfg = CoreEvalConfig(
        batch_size_prompts=4, n_eval_sparsity_variance_batches=2, compute_kl=False, compute_ce_loss=False
    )
    got = run_core(model, char_tokenizer, ZeroSae(32), 1, tokens, cfg, "zero")["eval_result_metrics"]
    per_token, normalised = [], []
    special = {char_tokenizer.bos_token_id, char_tokenizer.eos_token_id, char_tokenizer.pad_token_id}
    for batch in (tokens[:4], tokens[4:8]):
        with torch.no_grad():
            h = model(input_ids=batch, output_hidden_states=True).hidden_states[2]
        keep = torch.tensor([[int(t) not in special for t in row] for row in batch])
        errors = h[keep].pow(2).sum(-1).tolist()
        per_token += errors
        normalised += [e / len(errors) for e in errors]
    quality = got["reconstruction_quality"]
    assert quality["squared_error_per_token"] == pytest.approx(sum(per_token) / len(per_token), rel=1e-5)
    assert quality["mse"] == pytest.approx(sum(normalised) / len(normalised), rel=1e-5)
    assert quality["mse"] < quality["squared_error_per_token"] / 100  # ~ 1 / (4 × 31) of it


# --- absorption on a model that represents first letters -----------------------------------------


def _word_tokenizer():
    """A whitespace/punctuation word-level tokenizer over 10 made-up words per letter, the single capital
    letters and the prompt's words (built in memory)."""
    import random

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    words = {
        c + "".join(rng.choices(string.ascii_lowercase, k=3))
        for c in string.ascii_lowercase
        for _ in range(10)
    }
    vocab_words = [
        "<pad>",
        "<bos>",
        "<eos>",
        "<unk>",
        ":",
        *string.ascii_uppercase,
        "has",
        "the",
        "first",
        "letter",
    ]
    vocab_words += sorted(words - set(vocab_words))
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(vocab_words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def _spelling_model_and_sae(tokenizer):
    """Decoder layer 0 passes the embedding through unchanged and every alphabetic token embeds along its
    first letter's direction, so layer 0's residual holds the first letter linearly. The SAE's first 26
    latents are those directions."""
    from lorasae.sae import SaeConfig, TopKSAE

    torch.manual_seed(0)
    model = make_tiny_model("llama", n_layers=2, d=32, vocab=len(tokenizer))
    letter_dirs = torch.nn.functional.normalize(torch.randn(26, 32), dim=-1)
    with torch.no_grad():
        layer0 = model.model.layers[0]
        layer0.self_attn.o_proj.weight.zero_()
        layer0.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        noise = 0.1 * torch.randn(emb.shape)
        for token, idx in tokenizer.get_vocab().items():
            if token.isalpha():
                emb[idx] = 3 * letter_dirs[string.ascii_lowercase.index(token[0].lower())] + noise[idx]
    sae = TopKSAE(SaeConfig(d_in=32, d_sae=64, k=4))
    with torch.no_grad():
        sae.encoder.weight[:26] = letter_dirs
        sae.encoder.weight[26:] *= 0.1
        sae.W_dec[:26] = letter_dirs
    return model, sae


def test_absorption_scores_a_model_that_spells():
    tokenizer = _word_tokenizer()
    model, sae = _spelling_model_and_sae(tokenizer)
    # ~230 training words: small batches and more epochs give the probes enough steps; k ≤ 3 keeps fits few
    cfg = AbsorptionEvalConfig(
        gt_probe_batch_size=32, gt_probe_num_epochs=200, k_sparse_probe_batch_size=32, max_k_value=3
    )
    out = run_absorption(model, tokenizer, sae, 0, cfg, "letters")
    validate_eval_output(out)
    assert out["eval_result_unstructured"]["status"] == "ok", out["eval_result_unstructured"]
    assert len(out["eval_result_details"]) >= 20  # SAEBench's min_feats_for_eval
    for detail in out["eval_result_details"]:
        assert detail["num_probe_true_positives"] >= 1
        split = out["eval_result_unstructured"]["per_letter"][detail["first_letter"]]["split_feats"]
        assert string.ascii_lowercase.index(detail["first_letter"]) in split  # its letter latent was found
    # the letter latents always fire on their letter: nothing is absorbed
    mean = out["eval_result_metrics"]["mean"]
    assert mean["mean_absorption_fraction_score"] == pytest.approx(0.0)
    assert mean["mean_full_absorption_score"] == pytest.approx(0.0)
    assert 1.0 <= mean["mean_num_split_features"] < 2.0


def test_absorption_reports_a_weak_probe(char_tokenizer):
    from lorasae.sae import SaeConfig, TopKSAE

    model = make_tiny_model("llama")  # random: no first-letter direction at all
    out = run_absorption(
        model, char_tokenizer, TopKSAE(SaeConfig(32, 64, 4)), 1, AbsorptionEvalConfig(), "rand"
    )
    validate_eval_output(out)
    assert out["eval_result_unstructured"]["status"] == "probe_too_weak"
    assert "Cannot evaluate absorption" in out["eval_result_unstructured"]["message"]
    assert all(v is None for v in out["eval_result_metrics"]["mean"].values())


# --- autointerp against a local OpenAI-compatible server ------------------------------------------


@contextmanager
def judge_server():
    """A deterministic /v1/chat/completions: explanations name one letter; predictions list 1 and 2."""
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
            system = body["messages"][0]["content"]
            reply = "This neuron activates on the letter e." if "summarize" in system else "1, 2"
            payload = json.dumps(
                {
                    "id": f"cmpl-{len(requests)}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()


def test_autointerp_against_a_local_judge(tmp_path, char_tokenizer, monkeypatch):
    from lorasae.sae import SaeConfig, TopKSAE

    model = make_tiny_model("llama")
    sae = TopKSAE(SaeConfig(32, 64, 4))
    tokens = token_chunks(_corpus_file(tmp_path), char_tokenizer, 48, 40, seed=0)
    with judge_server() as (url, requests):
        cfg = AutoInterpEvalConfig(
            n_latents=4, llm_context_size=48, buffer=3, dead_latent_threshold=2, base_url=url,
            judge_model="stand-in", api_key_env="SAEBENCH_TEST_KEY", max_workers=2, max_retries=0, request_timeout=10,
        )  # fmt: skip
        monkeypatch.delenv("SAEBENCH_TEST_KEY", raising=False)
        assert run_autointerp(model, char_tokenizer, sae, 1, tokens, cfg, "sae") is None  # no key: skipped
        assert requests == []
        monkeypatch.setenv("SAEBENCH_TEST_KEY", "test-key")
        out = run_autointerp(model, char_tokenizer, sae, 1, tokens, cfg, "sae")
    validate_eval_output(out)
    scored = out["eval_result_unstructured"]["num_latents_scored"]
    assert 1 <= scored <= 4
    assert len(requests) == 2 * scored  # one generation and one scoring request per latent, no more
    assert {r["path"] for r in requests} == {"/v1/chat/completions"}
    assert all(r["auth"] == "Bearer test-key" and r["model"] == "stand-in" for r in requests)
    for result in out["eval_result_unstructured"]["results"].values():
        assert result["explanation"] == "the letter e"
        assert result["predictions"] == [1, 2]
        n_ex = cfg.n_ex_for_scoring
        expected = sum((i in (1, 2)) == (i in result["correct seqs"]) for i in range(1, n_ex + 1)) / n_ex
        assert result["score"] == pytest.approx(expected)
    assert 0 <= out["eval_result_metrics"]["autointerp"]["autointerp_score"] <= 1
    assert "test-key" not in json.dumps(out)


# --- run_eval.py / get_peft_dict.py end to end -----------------------------------------------------


@pytest.fixture
def saved_setup(tmp_path, out_root):
    """A saved tiny model + tokenizer, a TopK SAE for its layer 1 and a LoRA adapter with non-zero B."""
    from lorasae.lora.adapters import attach_lora
    from lorasae.sae import SaeConfig, TopKSAE

    model_dir = tmp_path / "tinyrand"
    make_tiny_model("llama").save_pretrained(model_dir)
    make_char_tokenizer().save_pretrained(model_dir)
    sae_dir = TopKSAE(SaeConfig(32, 64, 4, hook_layer=1)).save(tmp_path / "sae" / "model.layers.1")
    peft_model = attach_lora(make_tiny_model("llama"), [1, 2], rank=2)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    adapter_dir = tmp_path / "adapter" / "peft_1-2" / "rank_2"
    peft_model.save_pretrained(adapter_dir)
    return {
        "model": str(model_dir),
        "sae": str(sae_dir),
        "adapter": str(adapter_dir),
        "corpus": _corpus_file(tmp_path, repeats=40),  # autointerp's small size reads 256 chunks of 128
    }


def _args(setup: dict, model_type: str, evals: str, extra: list[str] | None = None) -> SaeBenchArgs:
    return parse(
        SaeBenchArgs,
        [
            "--device", "cpu", "--model", setup["model"], "--MODEL_TYPE", model_type, "--sae", setup["sae"],
            "--adapter", setup["adapter"], "--evals", evals, "--dataset", setup["corpus"],
            "--labelled_data", "builtin", "--train_set_size", "40", "--test_set_size", "20", *(extra or []),
        ],
    )  # fmt: skip


def test_run_eval_all_eight_on_base_and_peft(saved_setup, out_root, capsys, monkeypatch):
    """`--evals all` writes SAEBench's eight results for both models, autointerp against a local judge.
    The random tiny model knows none of the world's facts: RAVEL and unlearning are written as not scored."""
    from lorasae.saebench import world_tasks

    def few_questions(seed: int, n_docs: int | None = None) -> dict:  # the test world's corpus, 4 per subject
        return {s: qs[:4] for s, qs in full(seed, 800).items()}

    full = world_tasks.builtin_unlearning_questions
    monkeypatch.setattr(world_tasks, "builtin_unlearning_questions", few_questions)
    monkeypatch.setenv("SAEBENCH_TEST_KEY", "test-key")
    peft_evals = "core,scr,ravel,unlearning"  # all eight on base; the peft run checks the merged model's side
    with judge_server() as (url, requests):
        extra = ["--judge_base_url", url, "--api_key_env", "SAEBENCH_TEST_KEY", "--autointerp_latents", "2"]
        base = run(_args(saved_setup, "base", "all", extra))
        peft = run(_args(saved_setup, "peft", peft_evals, extra))
    assert requests
    assert set(base) == set(EVALS) and len(EVALS) == 8 and set(peft) == set(peft_evals.split(","))
    slots = set()
    for written, kind in ((base, "base"), (peft, "peft")):
        for name, path in written.items():
            # one slot per SAE (base) and per SAE and adapter (peft), each result with its run record
            assert path.parent.parent == out_root / "eval" / "SAE-Bench" / "results" / f"tinyrand_{kind}"
            assert path.name == f"{name}.json" and read_record(path).kind == "saebench_result"
            assert ("__peft_1-2_rank_2-" in path.parent.name) == (kind == "peft")
            slots.add(path.parent.name.split("__")[0])
            result = json.loads(path.read_text())
            validate_eval_output(result)
            assert result["sae_lens_id"] == saved_setup["sae"]
    core_base = json.loads(base["core"].read_text())["eval_result_metrics"]["model_performance_preservation"]
    core_peft = json.loads(peft["core"].read_text())["eval_result_metrics"]["model_performance_preservation"]
    assert core_base["ce_loss_without_sae"] != pytest.approx(
        core_peft["ce_loss_without_sae"]
    )  # merged weights
    printed = capsys.readouterr().out
    assert (
        "peft − base" in printed and "CE loss score" in printed and "CE gap closed by the adapter" in printed
    )
    ravel_out = json.loads(base["ravel"].read_text())
    assert ravel_out["eval_result_unstructured"]["status"] == "too_few_known_prompts"
    assert "ravel (base): the model completes too few prompts" in printed
    score = json.loads(peft["unlearning"].read_text())["eval_result_metrics"]["unlearning"][
        "unlearning_score"
    ]
    assert score is None or 0 <= score <= 1  # a random model may know a question or two by chance
    assert len(slots) == 1  # base and peft results of the same SAE
    assert set(HEADLINE) == set(EVALS)  # the comparison table has rows for all eight
    table_evals = {r[0] for r in comparison_rows(load_results(saved_setup["model"]))}
    assert {"core", "autointerp", "tpp"} <= table_evals and ("unlearning" in table_evals) == (
        score is not None
    )
    assert json.loads(base["scr"].read_text())["eval_config"]["ablation_pooling"] == "saebench"
    variant = result_variant(_args(saved_setup, "base", "all", extra))  # the figure is named by the settings
    assert variant and list(
        (out_root / "plots").glob(f"saebench_tinyrand__*__{variant}.png")
    )  # SAE, adapter, settings
    rows = comparison_rows(load_results(saved_setup["model"]))
    core_row = next(r for r in rows if r[1] == "CE clean")
    assert core_row[4] == pytest.approx(core_peft["ce_loss_without_sae"] - core_base["ce_loss_without_sae"])
    gap = gap_closed(load_results(saved_setup["model"]))
    expected = (core_base["ce_loss_with_sae"] - core_peft["ce_loss_with_sae"]) / (
        core_base["ce_loss_with_sae"] - core_base["ce_loss_without_sae"]
    )
    assert gap is not None and gap["fraction"] == pytest.approx(expected)


def test_get_peft_dict_matches_merging_in_memory(saved_setup, out_root):
    from lorasae.model.adapters import merge_adapter
    from lorasae.model.load import load_model

    out = save_peft_dict(saved_setup["model"], saved_setup["adapter"], None)
    assert out == out_root / "eval" / "SAE-Bench" / "peft_dicts" / "tinyrand_adapter_peft_1-2_rank_2.pt"
    ids = torch.randint(4, 90, (2, 16), generator=torch.Generator().manual_seed(0))
    merged, _ = load_model(saved_setup["model"], "cpu")
    merged = merge_adapter(merged, saved_setup["adapter"])
    fresh, _ = load_model(saved_setup["model"], "cpu")
    loaded, how = merged_model(fresh, Path(saved_setup["adapter"]), out)
    assert "state dict" in how
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, merged(ids).logits, atol=1e-5)
    # run_eval picks the saved dict up by default when it is newer than the adapter
    loaded_eval = load_for_eval(_args(saved_setup, "peft", "core"))
    assert str(out) in loaded_eval.description


def test_cli_flags_and_errors():
    args = parse(SaeBenchArgs, ["--MODEL_TYPE", "base", "--model", "tiny", "--evals", "core,tpp"])
    assert args.model_variant == "base" and args.model_name == "tiny"
    assert selected_evals(args.evals) == ["core", "tpp"]
    assert selected_evals("all") == list(EVALS)
    with pytest.raises(ValueError, match="unknown evals"):
        selected_evals("core,mdl")
    assert parse(SaeBenchArgs, []).model_name == "gemma"
    assert sae_identifier("gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82") == (
        "layer_12/width_16k/average_l0_82",
        "gemma-scope-2b-pt-res",
    )


def test_default_sae_and_adapter_resolution(out_root):
    from conftest import make_tiny_model

    from lorasae.sae import SaeConfig, TopKSAE

    model_dir = out_root / "tinyrand"
    make_tiny_model(n_layers=3, d=32).save_pretrained(model_dir)
    model = str(model_dir)
    with pytest.raises(FileNotFoundError, match="train_sae.py"):
        find_sae(model)
    assert find_sae("gemma").source == GEMMA_SCOPE_2B
    folder = out_root / "saved_saes" / "tinyrand" / "normal" / "expansion_2_L0_4" / "model.layers.1"
    TopKSAE(SaeConfig(32, 64, 4, hook_layer=1)).save(folder)
    TopKSAE(SaeConfig(32, 64, 4, hook_layer=1)).save(
        folder.parent.with_name("expansion_2_L0_4-50pct") / folder.name
    )
    ref = find_sae(model)
    assert ref.source == str(folder) and ref.layer == 1  # the final SAE, not a checkpoint
    with pytest.raises(FileNotFoundError, match="train_lora.py"):
        default_adapter(model, ref)
    # an adapter trained on the final SAE's 100% checkpoint counts for the final SAE
    adapter = out_root / "saved_models" / "tinyrand" / "expansion_2_L0_4-100pct" / "peft_0-2" / "rank_4"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    assert default_adapter(model, ref) == adapter


def test_a_saebench_run_handed_to_a_worker_process_is_the_very_run(tmp_path):
    # make demo runs base and LoRA-merged in two worker processes (lorasae/saebench/worker.py), each reading
    # its run back from a config file: every setting must survive the trip
    import dataclasses

    from lorasae.core.atomic import atomic_write_json
    from lorasae.saebench.args import SaeBenchArgs
    from lorasae.saebench.worker import read_run

    args = SaeBenchArgs(device="cpu", model="tiny", model_variant="base", evals="core,scr", seed=7, layer=1)
    atomic_write_json(tmp_path / "run.json", dataclasses.asdict(args))
    assert read_run(str(tmp_path / "run.json")) == args
