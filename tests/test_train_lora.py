"""LoRA adaptation (train_lora.py): layer choice, adapters at initialisation, the chunked KL, training
mode, outputs, reloading, errors. Tiny random models; everything offline and fast."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import VOCAB, make_tiny_model

from lorasae.core.losses import kl_next_token
from lorasae.kl import LogitHead, chunked_kl, final_hidden, naive_kl, verify_head
from lorasae.lora.adapters import (
    PROJECTIONS,
    adapted_layers,
    attach_lora,
    format_layers,
    lora_layer_list,
    parse_layer_spec,
    target_modules,
)
from lorasae.lora.trainer import KLObjective, TrainSettings, train_lora, validation_ce
from lorasae.model.ce import mean_ce
from lorasae.model.hooks import splice
from lorasae.model.load import LayerOutOfRangeError
from lorasae.sae import SaeConfig, TopKSAE

pytestmark = pytest.mark.usefixtures("one_thread")


def random_sae(d: int = 32, expansion: int = 4, k: int = 4, layer: int = 1, seed: int = 0) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SaeConfig.from_expansion(d, expansion, k, hook_layer=layer))
    sae.requires_grad_(False)
    return sae


def reconstruct_splices(saes):
    """`input_ids -> {layer: fn}` replacing each layer's output by the SAE reconstruction."""

    def build(_ids):
        return {layer: (lambda h, sae=sae: sae.reconstruct(h).to(h.dtype)) for layer, sae in saes.items()}

    return build


def ids(batch: int = 2, length: int = 24, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (batch, length), generator=g)


# --- layers -----------------------------------------------------------------------------------------


def test_layer_specs():
    assert parse_layer_spec("12") == [12]
    assert parse_layer_spec("1,4") == [1, 4]
    assert parse_layer_spec("3-5") == [3, 4, 5]
    assert parse_layer_spec("1, 3-4") == [1, 3, 4]
    assert lora_layer_list("all", [1], 4) == [0, 1, 2, 3]
    assert lora_layer_list("after", [1], 4) == [2, 3]
    assert lora_layer_list("after", [1, 2], 4) == [2, 3]
    assert lora_layer_list("0-2", [1], 4) == [0, 1, 2]
    assert format_layers([0, 1, 2, 3, 5]) == "0-3,5"
    assert format_layers([1]) == "1"
    with pytest.raises(LayerOutOfRangeError, match="4 decoder layers"):
        lora_layer_list("2-7", [1], 4)
    with pytest.raises(LayerOutOfRangeError):
        lora_layer_list("all", [9], 4)
    with pytest.raises(ValueError, match="no layers after"):
        lora_layer_list("after", [3], 4)
    with pytest.raises(ValueError):
        parse_layer_spec("one")


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_after_puts_adapters_only_after_the_sae_layer(arch):
    model = make_tiny_model(arch, n_layers=4)
    sae_layer = 1
    layers = lora_layer_list("after", [sae_layer], 4)
    names = target_modules(model, layers)
    assert len(names) == 7 * 2
    assert {n.rsplit(".", 1)[-1] for n in names} == set(PROJECTIONS)
    peft_model = attach_lora(model, layers, rank=4)
    assert adapted_layers(peft_model) == [2, 3]
    lora_modules = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A")]
    assert len(lora_modules) == 7 * (4 - sae_layer - 1)
    assert all(int(n.split("layers.")[1].split(".")[0]) > sae_layer for n in lora_modules)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert all(torch.count_nonzero(p) == 0 for p in lora_b)  # B initialised to 0


# --- initialisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_lora_with_sae_equals_spliced_base_at_init(arch):
    x = ids()
    sae = random_sae(layer=1)
    splices = reconstruct_splices({1: sae})
    base_model = make_tiny_model(arch)
    with torch.no_grad(), splice(base_model, splices(x)):
        expected = base_model(input_ids=x).logits
    model = make_tiny_model(arch)
    peft_model = attach_lora(model, [0, 1, 2], rank=8)
    for mode in (False, True):  # eval, and train mode with LoRA dropout active
        peft_model.train(mode)
        with torch.no_grad(), splice(peft_model, splices(x)):
            got = peft_model(input_ids=x).logits
        assert torch.equal(got, expected)
    ce_spliced_base = mean_ce(base_model, x, 2, splices)
    assert validation_ce(peft_model, x, 2, splices) == ce_spliced_base


# --- the KL -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_chunked_kl_equals_naive_full_tensor(softcap):
    model = make_tiny_model("gemma2" if softcap else "llama")
    model.config.final_logit_softcapping = softcap
    head = LogitHead.from_model(model)
    x = ids(3, 20)
    assert head.softcap == softcap and verify_head(model, head, x)
    with torch.no_grad():
        h_base = final_hidden(model, x)
    torch.manual_seed(0)
    h_student = (h_base + 0.5 * torch.randn_like(h_base)).requires_grad_()
    reference = naive_kl(head(h_student), head(h_base))
    assert torch.allclose(reference, kl_next_token(head(h_base), head(h_student)), rtol=1e-5)
    reference.backward()
    grad_ref, h_student.grad = h_student.grad.clone(), None
    for chunk in (1, 7, 1000):  # 60 positions: one per chunk, uneven chunks, one chunk
        value = chunked_kl(h_student, h_base, head=head, chunk_size=chunk)
        value.backward()
        assert torch.allclose(value, reference, rtol=1e-5, atol=1e-7)
        assert torch.allclose(h_student.grad, grad_ref, rtol=1e-4, atol=1e-5 * grad_ref.abs().max())
        h_student.grad = None
    logits = head(h_student).detach().requires_grad_()
    base_logits = head(h_base)
    naive_kl(logits, base_logits).backward()
    grad_ref = logits.grad.clone()
    logits.grad = None
    value = chunked_kl(logits, base_logits, chunk_size=8)
    value.backward()
    assert torch.allclose(value, reference, rtol=1e-5)
    assert torch.allclose(logits.grad, grad_ref, rtol=1e-4, atol=1e-5 * grad_ref.abs().max())


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_kl_objective_impls_agree_on_loss_and_lora_gradients(arch):
    x = ids(2, 16)
    sae = random_sae(layer=1)
    results = {}
    for impl in ("naive", "chunked", "fused"):
        model = make_tiny_model(arch)
        torch.manual_seed(3)
        peft_model = attach_lora(model, [0, 1, 2], rank=4, dropout=0.0)
        with torch.no_grad():  # non-zero B so that gradients reach A too
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)
        objective = KLObjective(peft_model, reconstruct_splices({1: sae}), impl, chunk_size=5)
        objective.check_fused(x)
        assert objective.impl == impl
        loss = objective(x)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad}
        results[impl] = (loss.detach(), grads)
    ref_loss, ref_grads = results["naive"]
    assert ref_loss > 0
    for impl in ("chunked", "fused"):
        loss, grads = results[impl]
        assert torch.allclose(loss, ref_loss, rtol=1e-5)
        for name, grad in grads.items():
            assert torch.allclose(
                grad, ref_grads[name], rtol=1e-3, atol=1e-4 * ref_grads[name].abs().max()
            ), (
                impl,
                name,
            )


def test_target_is_the_original_model_with_adapters_and_sae_off():
    x = ids(2, 16)
    model = make_tiny_model("llama")
    with torch.no_grad():
        expected = model(input_ids=x).logits
    peft_model = attach_lora(model, [0, 1, 2], rank=4)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    peft_model.train()
    objective = KLObjective(peft_model, reconstruct_splices({1: random_sae()}), "chunked")
    assert torch.equal(objective.target(x), expected)
    assert peft_model.training  # the target's eval mode does not leak


def test_base_view_equals_peft_disable_adapter_and_restores_the_adapters():
    from lorasae.lora.base_view import BaseView

    x = ids(2, 16)
    for attention_dropout in (0.0, 0.5):  # 0.5: a module outside the adapters that trains differently
        model = make_tiny_model("llama")
        model.config.attention_dropout = attention_dropout
        for layer in model.model.layers:
            layer.self_attn.attention_dropout = attention_dropout
        peft_model = attach_lora(model, [0, 1, 2], rank=4, dropout=0.3)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
        peft_model.eval()
        with torch.no_grad(), peft_model.disable_adapter():
            expected = peft_model(input_ids=x).logits
        with torch.no_grad():
            adapted = peft_model(input_ids=x).logits
        view = BaseView(peft_model)
        assert view.needs_eval == (attention_dropout > 0)
        assert len(view.layers) == 3 * 7  # q k v o gate up down on each adapted layer
        peft_model.train()
        with torch.no_grad(), view.base():
            got = peft_model(input_ids=x).logits
        assert torch.equal(got, expected)
        assert peft_model.training and all(not layer.disable_adapters for layer in view.layers)
        peft_model.eval()
        with torch.no_grad():
            assert torch.equal(peft_model(input_ids=x).logits, adapted)  # adapters back on
        assert not torch.equal(adapted, expected)


# --- training ---------------------------------------------------------------------------------------


def test_training_reduces_kl_and_restores_training_mode():
    torch.manual_seed(0)
    model = make_tiny_model("llama")
    peft_model = attach_lora(model, [0, 1, 2], rank=8)
    saes = {1: random_sae(layer=1)}
    modes = []

    def log(record):
        modes.append(
            (
                peft_model.training,
                all(m.training for n, m in peft_model.named_modules() if "lora_dropout" in n),
            )
        )

    batches = itertools.cycle([ids(2, 24, seed=s) for s in range(4)])
    val = ids(4, 24, seed=999)
    objective = KLObjective(peft_model, reconstruct_splices(saes))
    with torch.no_grad():
        kl_before = objective(val).item()
    settings = TrainSettings(
        num_train_examples=40, batch_size=2, lr=1e-3, eval_every=10, progress=False, log_fn=log
    )
    result = train_lora(peft_model, reconstruct_splices(saes), batches, val, settings)
    peft_model.eval()
    with torch.no_grad():
        assert objective(val).item() < kl_before
    peft_model.train()
    assert len(result.val_losses) == 5 and result.examples == [0, 10, 20, 30, 40]
    assert result.minutes[0] == 0 and result.minutes == sorted(result.minutes)
    assert modes and all(m == (True, True) for m in modes)  # training mode back after every evaluation
    assert peft_model.training
    assert result.train_kl[-1] < result.train_kl[0]
    assert result.L_SAE == result.val_losses[0] and result.L_LoRA == result.val_losses[-1]
    assert result.L_base == pytest.approx(mean_ce(make_tiny_model("llama"), val, 4))


# --- settings ---------------------------------------------------------------------------------------


def test_paper_defaults_small_model_defaults_and_help(capsys):
    from lorasae.core.cli import parse
    from lorasae.lora.config import TrainLoraConfig
    from lorasae.train.config import TrainSaeConfig

    gemma = parse(TrainLoraConfig, ["--model_type", "gemma"]).resolved(2304, 26, 8192)
    assert (gemma.rank, gemma.num_train_examples, gemma.LoRA_layers, gemma.sae_layer) == (
        64,
        15000,
        "all",
        "12",
    )
    assert (gemma.lr, gemma.ctx_len, gemma.num_val_tokens, gemma.eval_every) == (5e-5, 1024, 1_000_000, 1000)
    assert (gemma.batch_size, gemma.weight_decay, gemma.max_grad_norm) == (1, 0.01, 1.0)
    assert (gemma.lora_alpha, gemma.lora_dropout, gemma.dataset) == (32, 0.1, "redpajama")
    argv = ["--model_type", "tiny", "--num_train_examples", "300", "--save_model", "--LoRA_layers", "after"]
    tiny = parse(TrainLoraConfig, argv).resolved(128, 4, 128)
    assert (tiny.lr, tiny.ctx_len, tiny.eval_every, tiny.batch_size) == (5e-4, 128, 30, 1)
    # the same validation/train split and validation batches as train_sae.py
    sae_cfg = parse(TrainSaeConfig, ["--model_type", "tiny"]).resolved(128, 128)
    assert (tiny.num_val_tokens, tiny.val_batch_size) == (sae_cfg.num_val_tokens, sae_cfg.val_batch_size)
    assert (
        tiny.save_model
        and tiny.sae_layer == "1"
        and tiny.dataset == "builtin"
        and tiny.LoRA_layers == "after"
    )
    joint = parse(TrainLoraConfig, ["--sae", "a", "--sae", "b", "c"]).resolved(128, 4)
    assert joint.sae == ["a", "b", "c"] and joint.sae_layer is None
    with pytest.raises(ValueError, match="--checkpoint_percent"):
        parse(TrainLoraConfig, ["--sae", "a", "--checkpoint_percent", "50"]).resolved(128, 4)
    with pytest.raises(SystemExit) as exit_info:
        parse(TrainLoraConfig, ["--help"])
    assert exit_info.value.code == 0 and "--LoRA_layers" in capsys.readouterr().out
