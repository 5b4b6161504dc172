"""The paper's models written out as transformers configs (lorasae/model/paper_shapes.py): the parameter counts
of the real models, and toy-width versions that keep the architecture."""

from __future__ import annotations

import pytest
import torch

from lorasae.model.paper_shapes import Shrink, param_count, random_model, real_config, shrunk_config


@pytest.mark.parametrize(
    ("name", "billions"), [("gemma-2-2b", 2.614), ("gemma-2-9b", 9.242), ("llama-3.2-1b", 1.236)]
)
def test_real_configs_have_the_published_parameter_counts(name, billions):
    assert param_count(real_config(name)) / 1e9 == pytest.approx(billions, abs=0.001)


def test_gemma_keeps_soft_capping_sliding_windows_and_the_tied_head():
    config = real_config("gemma-2-2b")
    assert config.attn_logit_softcapping == 50.0 and config.final_logit_softcapping == 30.0
    assert config.sliding_window == 4096 and config.layer_types[0] == "sliding_attention"
    assert config.tie_word_embeddings and config.hidden_size * 8 == 18_432


def test_shrunk_model_runs_in_bf16_with_the_same_architecture():
    config = shrunk_config("llama-3.2-1b", Shrink(layers=2, vocab=256))
    assert config.rope_parameters["rope_type"] == "llama3" and config.num_hidden_layers == 2
    model = random_model(config, torch.bfloat16)
    logits = model(torch.randint(0, 256, (1, 8))).logits
    assert logits.shape == (1, 8, 256) and logits.dtype is torch.bfloat16 and torch.isfinite(logits).all()
