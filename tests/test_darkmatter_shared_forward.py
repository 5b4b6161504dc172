"""Dark Matter's SAEInfos of several SAEs on one model, layer and token region share one model forward
(issue 30): an SAEInfo built from another SAE's (`build_sae_info(clean=...)`) is the same record bit for
bit as one built with its own forward, and runs no forward."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model

from lorasae.darkmatter.info import _TENSORS, build_sae_info
from lorasae.sae import SaeConfig, TopKSAE

pytestmark = pytest.mark.usefixtures("one_thread")
SPECIAL = [1, 2]


def _chunks(n: int = 10, seed: int = 0) -> torch.Tensor:
    chunks = torch.randint(3, 96, (n, 24), generator=torch.Generator().manual_seed(seed))
    chunks[:, 0] = 1  # BOS first, an EOS inside: special positions are left out
    chunks[3, 7] = 2
    return chunks


def test_an_sae_info_from_another_saes_forward_is_the_same_record_and_runs_no_forward():
    model = make_tiny_model("llama", n_layers=3, d=32)
    torch.manual_seed(1)
    first, second = TopKSAE(SaeConfig(d_in=32, d_sae=64, k=4)), TopKSAE(SaeConfig(d_in=32, d_sae=128, k=8))
    chunks = _chunks()
    clean = build_sae_info(model, first, chunks, 1, SPECIAL, batch_size=4, progress=False)
    own = build_sae_info(model, second, chunks, 1, SPECIAL, batch_size=4, progress=False)

    def no_forward(*args, **kwargs):
        raise AssertionError("the model ran")

    model.forward = no_forward
    shared = build_sae_info(model, second, chunks, 1, SPECIAL, batch_size=4, progress=False, clean=clean)
    for name in _TENSORS:  # the loss is NaN at each chunk's last position
        ours, theirs = getattr(shared, name), getattr(own, name)
        assert ours.dtype == theirs.dtype and torch.equal(ours.nan_to_num(-7.0), theirs.nan_to_num(-7.0)), (
            name
        )
        if ours.is_floating_point():
            assert torch.equal(ours.isnan(), theirs.isnan()), name
    assert shared.meta == own.meta
    with pytest.raises(ValueError, match="other tokens"):
        build_sae_info(model, second, _chunks(seed=1), 1, SPECIAL, batch_size=4, progress=False, clean=clean)
    with pytest.raises(ValueError, match="other tokens"):
        build_sae_info(model, second, chunks[:6], 1, SPECIAL, batch_size=4, progress=False, clean=clean)
