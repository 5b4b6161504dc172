"""`mlp_splice` / `mlp_io_at` (lorasae/model/hooks.py), the hooks a transcoder needs: the MLP's (input, output)
rows, and its output replaced by a function of its input, on the tiny Llama and Gemma 2."""

from __future__ import annotations

import copy

import pytest
import torch

from lorasae.model import hooks
from lorasae.sae.transcoder import Transcoder, TranscoderConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mlp_io_rows_are_the_mlps_input_and_output(tiny_model):
    ids = torch.randint(3, 90, (2, 7))
    with torch.no_grad():
        mlp_in, mlp_out = hooks.mlp_io_at(tiny_model, ids, 1)
        assert mlp_in.shape == mlp_out.shape == (2, 7, 32)
        torch.testing.assert_close(mlp_out, hooks.mlp_of(tiny_model, 1)(mlp_in))


def test_mlp_splice_replaces_the_mlp_output_by_a_function_of_its_input(tiny_model):
    ids = torch.randint(3, 90, (2, 7))
    mlp = hooks.mlp_of(tiny_model, 1)
    with torch.no_grad():
        clean = tiny_model(input_ids=ids).logits
        with hooks.mlp_splice(tiny_model, {1: copy.deepcopy(mlp)}):  # the MLP itself: nothing changes
            torch.testing.assert_close(tiny_model(input_ids=ids).logits, clean)
        with hooks.mlp_splice(tiny_model, {1: lambda h: torch.zeros_like(h)}):
            spliced = tiny_model(input_ids=ids).logits
        mlp.down_proj.weight.zero_()  # the same model with that MLP's output zero, written by hand
        torch.testing.assert_close(spliced, tiny_model(input_ids=ids).logits)
        assert not torch.allclose(spliced, clean)
    assert not mlp._forward_hooks  # removed on exit


def test_a_transcoder_spliced_in_reads_the_mlp_input():
    from conftest import make_tiny_model

    model = make_tiny_model("llama")
    ids = torch.randint(3, 90, (1, 5))
    coder = Transcoder(TranscoderConfig(d_in=32, d_sae=64, hook_layer=0))
    seen = []

    def fn(h):
        seen.append(h)
        return coder.reconstruct(h)

    with torch.no_grad(), hooks.mlp_splice(model, {0: fn}):
        model(input_ids=ids)
        mlp_in, _ = hooks.mlp_io_at(model, ids, 0)
    torch.testing.assert_close(seen[0], mlp_in)
