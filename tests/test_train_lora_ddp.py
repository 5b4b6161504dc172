"""Data-parallel LoRA training over gloo on the CPU: two ranks with one sequence each give the same
adapters and validation curve as one process with both sequences."""

from __future__ import annotations

import itertools
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import VOCAB, make_tiny_model

from lorasae.lora.adapters import attach_lora
from lorasae.lora.trainer import TrainSettings, train_lora
from lorasae.sae import SaeConfig, TopKSAE


def _batches():
    g = torch.Generator().manual_seed(5)
    data = [torch.randint(4, VOCAB, (2, 20), generator=g) for _ in range(3)]
    return itertools.cycle(data)


def _run(tmp: str | None, rank: int = 0, world: int = 1):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = make_tiny_model("llama")
    torch.manual_seed(1)
    peft_model = attach_lora(model, [0, 1, 2], rank=4, dropout=0.0)
    torch.manual_seed(2)
    sae = TopKSAE(SaeConfig.from_expansion(32, 4, 4, hook_layer=1))

    def splices(_ids):
        return {1: lambda h: sae.reconstruct(h).to(h.dtype)}

    val = torch.randint(4, VOCAB, (3, 20), generator=torch.Generator().manual_seed(9))
    settings = TrainSettings(num_train_examples=6, batch_size=2, lr=1e-3, eval_every=2, progress=False)
    result = train_lora(peft_model, splices, _batches(), val, settings)
    weights = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    if tmp is not None:
        torch.save(
            {"weights": weights, "val": result.val_losses, "base": result.L_base}, f"{tmp}/rank{rank}.pt"
        )
    return weights, result


def _worker(rank: int, world: int, tmp: str) -> None:
    os.environ["LOCAL_RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    try:
        _run(tmp, rank, world)
    finally:
        dist.destroy_process_group()


def test_gloo_two_ranks_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    single_weights, single = _run(None)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for out in ranks:
        assert out["val"] == ranks[0]["val"]  # every rank sees the same (all-reduced) curve
        assert abs(out["base"] - single.L_base) < 1e-6
        for a, b in zip(out["val"], single.val_losses):
            assert abs(a - b) < 1e-5
        for name, w in single_weights.items():
            assert torch.allclose(out["weights"][name], w, atol=1e-6), name
