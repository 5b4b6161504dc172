"""`train_lora.py --sae <folder>` with a dictionary of every new architecture on the small built-in
world: a few steps write the adapter, the CE_increase JSON and the results.csv row; for a transcoder and
a JumpReLU SAE, L_SAE equals the CE of a forward with a hand-written hook (MLP output / residual)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from arch_helpers import NEW_ARCHITECTURES, make_dictionary

from lorasae.core.cli import parse
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.run import main as train_lora_main
from lorasae.model.data import load_token_split
from lorasae.model.load import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

LAYER = 0


def _argv(world_model, folder) -> list[str]:
    return [
        "--device", "cpu", "--model", str(world_model), "--dataset", "builtin", "--sae", str(folder),
        "--ctx_len", "32", "--num_val_tokens", "96", "--rank", "4", "--num_train_examples", "4",
        "--eval_every", "2", "--val_batch_size", "4", "--progress", "false", "--save_model",
    ]  # fmt: skip


def _independent_ce(world_model, kind: str, sae) -> float:
    """Mean next-token CE of the validation chunks train_lora scores, with the dictionary applied by a
    hook written here: the MLP output of layer 0 for a transcoder, the residual after it for JumpReLU."""
    model, tokenizer = load_model(str(world_model), "cpu")
    chunks = load_token_split("builtin", tokenizer, 32, 96, 42).val
    block = model.model.layers[LAYER]
    if kind == "transcoder":

        def hook(_module, args, _output):
            return torch.relu(args[0] @ sae.W_enc + sae.b_enc) @ sae.W_dec + sae.b_dec

        module = block.mlp
    else:
        theta = sae.log_threshold.detach().exp()

        def hook(_module, _args, output):
            h = output[0] if isinstance(output, tuple) else output
            pre = h @ sae.W_enc + sae.b_enc
            rec = (pre * (pre > theta)) @ sae.W_dec + sae.b_dec
            return (rec, *output[1:]) if isinstance(output, tuple) else rec

        module = block
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(input_ids=chunks, use_cache=False).logits
    finally:
        handle.remove()
    return float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), chunks[:, 1:].reshape(-1)))


@pytest.mark.parametrize("kind", NEW_ARCHITECTURES)
def test_train_lora_adapts_the_model_to_every_architecture(world_model, out_root, tmp_path, kind):
    sae = make_dictionary(kind, 32, LAYER)
    folder = sae.save(tmp_path / kind)
    (summary,) = train_lora_main(parse(TrainLoraConfig, _argv(world_model, folder)))
    result = summary.result
    assert summary.sae_layers == [LAYER]
    ce = json.loads(summary.run.json_path("CE_increase").read_text())
    assert ce["initial"] == result.L_SAE and ce["converged"] == result.L_LoRA and ce["base"] == result.L_base
    assert result.L_SAE > result.L_base  # the random dictionary costs CE
    adapter = summary.run.adapter_path()
    assert adapter.is_dir() and any(adapter.glob("adapter_model.*"))
    with open(out_root / "data" / "results.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["sae_layers"] == str(LAYER) and float(row["sae_width"]) == sae.cfg.d_sae
    if kind in ("transcoder", "jumprelu"):
        assert result.L_SAE == pytest.approx(_independent_ce(world_model, kind, sae), abs=1e-5)
