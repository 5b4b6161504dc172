"""lm-eval wrapper: log-likelihoods through HFLM (with the SAE spliced and an unmerged LoRA adapter) equal a
direct computation; results files and the comparison table; the command-line config."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import make_char_tokenizer, make_tiny_model

from lorasae.core.cli import parse
from lorasae.lmeval.comparison import comparison_table, load_results, task_metrics
from lorasae.lmeval.config import BenchmarkConfig
from lorasae.lmeval.layout import ALL_FOUR, Combination, results_path
from lorasae.lmeval.pairing import resolve_pairing, sae_id_tag
from lorasae.lmeval.plan import plan_run
from lorasae.lmeval.run import write_results
from lorasae.lmeval.tasks import BUILTIN_TASKS
from lorasae.lmeval.wrapper import benchmark_lm
from lorasae.model.hooks import splice
from lorasae.model.load import special_token_ids

SAE_LAYER = 1


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is as fast as two on an idle machine and far faster on a busy one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PAIRS = [
    ("The cat sat on", " the mat."),
    ("The cat sat on", " a hat."),
    ("abc", "d"),
    ("abc", "e"),
    ("Numbers: 1, 2,", " 3"),
    ("x", " a much longer continuation than the others"),
]


def bos_char_tokenizer():
    """The character tokenizer, adding BOS in front of every encoded text like Gemma's."""
    from tokenizers.processors import TemplateProcessing

    tokenizer = make_char_tokenizer()
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tokenizer.bos_token_id)]
    )
    return tokenizer


def random_sae(d: int, skip_special_tokens: bool):
    from lorasae.sae import SaeConfig, TopKSAE

    torch.manual_seed(1)
    cfg = SaeConfig(d_in=d, d_sae=4 * d, k=4, hook_layer=SAE_LAYER, skip_special_tokens=skip_special_tokens)
    sae = TopKSAE(cfg)
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.5)
    return sae.eval().requires_grad_(False)


def with_random_adapter(model):
    from lorasae.lora.adapters import attach_lora

    peft_model = attach_lora(model, layers=[0, 2], rank=2)
    torch.manual_seed(2)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    return peft_model.eval()


def direct_logliks(model, tokenizer, pairs, sae=None) -> list[float]:
    """Sum of log p(continuation | context), one sequence at a time, the SAE spliced by hand."""
    special = torch.tensor(special_token_ids(tokenizer))
    out = []
    for context, continuation in pairs:
        n_ctx = len(tokenizer(context).input_ids)
        ids = torch.tensor([tokenizer(context + continuation).input_ids])

        def spliced(h, ids=ids):
            recon = sae.reconstruct(h).to(h.dtype)
            if not sae.skip_special_tokens:
                return recon
            return torch.where(torch.isin(ids, special)[..., None], h, recon)

        with torch.no_grad(), splice(model, {SAE_LAYER: spliced} if sae is not None else {}):
            logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
        targets = ids[0, n_ctx:]
        out.append(float(logp[n_ctx - 1 : -1].gather(1, targets[:, None]).sum()))
    return out


def harness_logliks(model, tokenizer, pairs, sae=None, batch_size: int = 3) -> list[float]:
    from lm_eval.api.instance import Instance

    requests = [
        Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=0, metadata=("t", i, 1))
        for i, pair in enumerate(pairs)
    ]
    with benchmark_lm(
        model, tokenizer, saes={SAE_LAYER: sae} if sae is not None else None, batch_size=batch_size
    ) as lm:
        return [ll for ll, _greedy in lm.loglikelihood(requests, disable_tqdm=True)]


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_harness_logliks_equal_direct(arch):
    model = make_tiny_model(arch)
    tokenizer = bos_char_tokenizer()
    peft_model = with_random_adapter(model)
    clean = direct_logliks(peft_model, tokenizer, PAIRS)
    assert harness_logliks(peft_model, tokenizer, PAIRS) == pytest.approx(clean, abs=1e-4)

    for skip in (True, False):
        sae = random_sae(32, skip_special_tokens=skip)
        expected = direct_logliks(peft_model, tokenizer, PAIRS, sae=sae)
        got = harness_logliks(peft_model, tokenizer, PAIRS, sae=sae)
        assert got == pytest.approx(expected, abs=1e-4)
        assert max(abs(a - b) for a, b in zip(got, clean)) > 1e-2  # the splice did something

    with peft_model.disable_adapter():
        base = direct_logliks(peft_model, tokenizer, PAIRS)
    assert max(abs(a - b) for a, b in zip(base, clean)) > 1e-3  # and so did the adapter


def test_bos_kept_for_skip_special_sae():
    """With skip_special_tokens (Gemma Scope), the BOS position keeps its activation: the results differ
    from splicing every position, and the hooks are gone after the block."""
    model = make_tiny_model("gemma2")
    tokenizer = bos_char_tokenizer()
    keep = harness_logliks(model, tokenizer, PAIRS[:3], sae=random_sae(32, True), batch_size=1)
    every = harness_logliks(model, tokenizer, PAIRS[:3], sae=random_sae(32, False), batch_size=1)
    assert max(abs(a - b) for a, b in zip(keep, every)) > 1e-3
    clean = direct_logliks(model, tokenizer, PAIRS[:3])
    assert harness_logliks(model, tokenizer, PAIRS[:3]) == pytest.approx(clean, abs=1e-4)


def test_bf16_model_with_float32_sae():
    """The Gemma settings run the model in bfloat16 with the SAE in float32 (as the original)."""
    model = make_tiny_model("gemma2").to(torch.bfloat16)
    tokenizer = bos_char_tokenizer()
    sae = random_sae(32, skip_special_tokens=True)
    got = harness_logliks(model, tokenizer, PAIRS, sae=sae, batch_size=1)
    expected = direct_logliks(model, tokenizer, PAIRS, sae=sae)
    assert all(math.isfinite(x) for x in got)
    assert got == pytest.approx(expected, rel=2e-2, abs=2e-2)


def _fake_out(acc: float) -> dict:
    return {
        "results": {
            "tiny_facts": {"alias": "tiny_facts", "sample_len": 6, "acc,none": acc, "acc_stderr,none": 0.01},
            "tiny_domains": {"acc,none": acc / 2, "acc_stderr,none": 0.02, "acc_norm,none": acc / 3},
        },
        "n-shot": {"tiny_facts": 0, "tiny_domains": 0},
        "versions": {"tiny_facts": 1.0},
    }


def test_results_files_and_table(out_root):
    for i, combo in enumerate(ALL_FOUR[:3]):
        write_results(results_path("tiny", combo), _fake_out(0.5 + 0.1 * i), {"model": "tiny"})
    path = results_path("tiny", Combination(peft=True, sae=False))
    assert path == out_root / "eval" / "benchmarks" / "results" / "tiny_peft_no_sae.json"
    assert load_results(path)["tiny_facts"]["acc,none"] == pytest.approx(0.7)
    assert task_metrics(load_results(path)["tiny_domains"]) == {
        "acc": (pytest.approx(0.35), 0.02),
        "acc_norm": (pytest.approx(0.7 / 3), None),
    }
    table = comparison_table("tiny", tasks=["tiny_facts", "tiny_domains"])
    assert "base_no_sae" in table and "peft_sae" in table and "sample_len" not in table
    facts_row = next(line for line in table.splitlines() if "tiny_facts" in line)
    assert "0.5000 ± 0.0100" in facts_row and "0.7000" in facts_row and "—" in facts_row


def _touch(path, name="cfg.json", text="{}"):
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(text)
    return path


def test_config_and_gemma_scope_plan(out_root):
    config = parse(BenchmarkConfig, ["--model_type", "peft", "--model_size", "9", "--sae", "--device", "cpu"])
    plan = plan_run(config)
    assert plan.model_name == "google/gemma-2-9b" and plan.model_key == "gemma-2-9b"
    assert plan.tasks == ["mmlu", "hellaswag", "truthfulqa_mc1", "truthfulqa_mc2"]
    assert plan.combinations == (Combination(peft=True, sae=True),)
    assert config.model_dtype == "bfloat16"
    with pytest.raises(FileNotFoundError, match="train_lora.py"):
        resolve_pairing(config, plan, n_layers=42)
    # adapters trained by the original repository live under the sae_id tag
    original = _touch(
        out_root / "saved_models/gemma-2-9b/layer_20_width_131k_average_l0_62/peft_21-41/rank_64",
        "adapter_config.json",
    )
    plan = resolve_pairing(config, plan_run(config), n_layers=42)
    source = "gemma-scope-9b-pt-res/layer_20/width_131k/average_l0_62"
    assert plan.sae_sources == [(source, 20)] and plan.adapter == original
    assert sae_id_tag(source) == "layer_20_width_131k_average_l0_62"

    base = parse(BenchmarkConfig, ["--model_type", "base", "--sae"])  # no --model_size: the 2B setting
    plan = resolve_pairing(base, plan_run(base), n_layers=26)
    assert plan.model_name == "google/gemma-2-2b" and plan.adapter is None
    assert plan.sae_sources == [("gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82", 12)]

    # `train_lora.py --model_type gemma --sae <Gemma Scope> --LoRA_layers after --rank 64 --save_model`
    ours = _touch(
        out_root
        / "saved_models/gemma/gemma-scope-2b-pt-res--layer_12--width_16k--average_l0_82/peft_13-25/rank_64",
        "adapter_config.json",
    )
    peft = parse(BenchmarkConfig, ["--model_type", "peft", "--model_size", "2"])
    plan = resolve_pairing(peft, plan_run(peft), n_layers=26)
    assert plan.adapter == ours and plan.sae_sources == [] and plan.model_key == "gemma-2-2b"

    with pytest.raises(ValueError, match="peft' or 'base"):
        plan_run(parse(BenchmarkConfig, ["--model_variant", "tiny"]))
    assert plan_run(parse(BenchmarkConfig, ["--model", "tiny"])).tasks == list(BUILTIN_TASKS)
    # --model_type is the model here too (docs/FLAGS.md); only base/peft are the original's model variant
    assert plan_run(parse(BenchmarkConfig, ["--model_type", "tiny"])).tasks == list(BUILTIN_TASKS)


def test_sae_and_adapter_pairing(out_root):
    from conftest import make_tiny_model

    model = out_root / "models" / "tiny"  # a 4-layer model whose outputs live under the key `tiny`
    make_tiny_model(n_layers=4, d=32).save_pretrained(model)
    config = parse(BenchmarkConfig, ["--model", str(model), "--all_four"])
    with pytest.raises(FileNotFoundError, match="train_sae.py"):
        resolve_pairing(config, plan_run(config), n_layers=4)
    base_only = parse(BenchmarkConfig, ["--model", str(model), "--sae"])
    with pytest.raises(FileNotFoundError, match="train_sae.py"):
        resolve_pairing(base_only, plan_run(base_only), n_layers=4)

    saes = out_root / "saved_saes/tiny/normal"
    final = _touch(saes / "expansion_8_L0_4/model.layers.1")
    _touch(saes / "expansion_8_L0_4-50pct/model.layers.1")
    plan = resolve_pairing(base_only, plan_run(base_only), n_layers=4)
    assert plan.sae_sources == [(str(final), 1)]  # the final SAE before checkpoints
    with pytest.raises(FileNotFoundError, match="train_lora.py"):  # no adapter for it yet
        resolve_pairing(config, plan_run(config), n_layers=4)

    # an adapter trained on the final SAE's 100% checkpoint counts for the final SAE (same weights)
    checkpoint = _touch(saes / "expansion_8_L0_4-100pct/model.layers.1")
    adapter = _touch(
        out_root / "saved_models/tiny/expansion_8_L0_4-100pct/peft_0-3/rank_16", "adapter_config.json"
    )
    plan = resolve_pairing(config, plan_run(config), n_layers=4)
    assert plan.adapter == adapter and plan.sae_sources == [(str(final), 1)]

    # --adapter decides the SAE: its results.csv row, else its tag folder
    by_adapter = parse(BenchmarkConfig, ["--model", str(model), "--all_four", "--adapter", str(adapter)])
    plan = resolve_pairing(by_adapter, plan_run(by_adapter), n_layers=4)
    assert plan.adapter == adapter and plan.sae_sources == [(str(checkpoint), 1)]
    (out_root / "data").mkdir()
    (out_root / "data/results.csv").write_text(
        "model,sae_tag,sae_source,sae_layers,lora_layers,rank\n"
        f"tiny,expansion_8_L0_4-100pct,{final},1,0-3,16\n"
    )
    # the adapter has no record of its own: one was inferred at its first use and is written when the
    # command succeeds (inferred once); an adapter first used now would be described by its results.csv row
    from lorasae.core.records import drop_deferred, write_deferred

    assert adapter / "run.json" in write_deferred()  # with the legacy SAE folders' records
    assert json.loads((adapter / "run.json").read_text())["inferred"] is True
    (adapter / "run.json").unlink()
    drop_deferred()
    plan = resolve_pairing(by_adapter, plan_run(by_adapter), n_layers=4)
    assert plan.adapter == adapter and plan.sae_sources == [(str(final), 1)]

    # --sae_source: that SAE and the adapter trained for it
    explicit = parse(BenchmarkConfig, ["--model", str(model), "--all_four", "--sae_source", str(checkpoint)])
    plan = resolve_pairing(explicit, plan_run(explicit), n_layers=4)
    assert plan.sae_sources == [(str(checkpoint), 1)] and plan.adapter == adapter
    other_sae = _touch(saes / "expansion_8_L0_2/model.layers.1")
    other = parse(
        BenchmarkConfig, ["--model", str(model), "--model_type", "peft", "--sae_source", str(other_sae)]
    )
    with pytest.raises(FileNotFoundError, match="expansion_8_L0_2"):
        resolve_pairing(other, plan_run(other), n_layers=4)
