"""The grok featurizing model is a plain transformers causal LM: hook points, splicing, loading, LoRA."""

from __future__ import annotations

import torch

from lorasae.grok_world.model import GrokModelConfig, build_model, last_logits, save_model
from lorasae.grok_world.tasks import ModularTask
from lorasae.model.hooks import residual_at, splice
from lorasae.model.load import d_model, decoder_layers, load_model

TASK = ModularTask(prime=11, train_frac=0.5)
SMALL = GrokModelConfig(d_model=32, d_ff=64, n_heads=2, n_layers=2)


def test_model_has_the_configured_decoder_layers_and_width():
    model = build_model(TASK, SMALL)
    assert len(decoder_layers(model)) == 2 and d_model(model) == 32
    assert model.config.vocab_size == TASK.vocab_size
    assert build_model(TASK, GrokModelConfig(use_geglu=True)).config.hidden_act.startswith("gelu")


def test_residual_at_equals_the_output_hidden_state_of_that_layer():
    model = build_model(TASK, SMALL).eval()
    ids = TASK.datasets()["all"][0][:20]
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
        torch.testing.assert_close(residual_at(model, ids, 0), hidden[1])


def test_splice_changes_the_answer_logits_and_identity_splice_does_not():
    model = build_model(TASK, SMALL).eval()
    ids = TASK.datasets()["all"][0]
    with torch.no_grad():
        plain = last_logits(model, ids)
        with splice(model, {0: lambda h: h}):
            same = last_logits(model, ids)
        with splice(model, {1: lambda h: h * 0.5}):
            changed = last_logits(model, ids)
    torch.testing.assert_close(same, plain)
    assert (changed - plain).abs().max() > 1e-3
    assert plain.shape == (121, 11)


def test_saved_model_loads_with_load_model_and_gives_the_same_logits(tmp_path):
    model = build_model(TASK, SMALL).eval()
    save_model(model, TASK, tmp_path / "m")
    loaded, tokenizer = load_model(str(tmp_path / "m"), device="cpu")
    ids = torch.tensor([tokenizer("3 5 =")["input_ids"]])
    assert ids.tolist() == [[3, 5, 11]]
    with torch.no_grad():
        torch.testing.assert_close(last_logits(loaded, ids), last_logits(model, ids))


def test_peft_lora_attaches_to_the_grok_model_and_trains():
    from lorasae.lora.adapters import attach_lora

    model = build_model(TASK, SMALL)
    ids, labels = TASK.datasets()["train"]
    with torch.no_grad():
        before = last_logits(model, ids)
    peft_model = attach_lora(model, [0, 1], rank=2, dropout=0.0)
    with torch.no_grad():
        torch.testing.assert_close(last_logits(peft_model, ids), before)  # B = 0 at init
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=1e-2)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(last_logits(peft_model, ids), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert (last_logits(peft_model, ids) - before).abs().max() > 1e-4
