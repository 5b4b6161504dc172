"""Downstream CE of the error components (issue 26 item 4): the original's protocol (first 200 positions
clean, predictions from position 200 on scored) where the context allows it, the named all-position
variant where it does not; both against a splice written by hand with a forward hook on a tiny Llama."""

import pytest
import torch
import torch.nn.functional as F

from lorasae.darkmatter.downstream import component_ce, downstream_protocol
from lorasae.darkmatter.linear import LinearMap
from lorasae.sae import SaeConfig, TopKSAE

D, LAYER = 32, 1


@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=D, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    sae = TopKSAE(SaeConfig(d_in=D, d_sae=64, k=4, hook_layer=LAYER)).eval()
    g = torch.Generator().manual_seed(1)
    lin = LinearMap(torch.randn(D, D, generator=g, dtype=torch.float64) * 0.2, torch.full((D,), 0.1).double())
    return model, sae, lin


def _by_hand(model, sae, lin, ids, variant: str | None, clean: int) -> float:
    """CE of the predictions made at positions ≥ `clean`, with layer LAYER's output replaced (from
    position `clean` on) by the variant, through a hook registered here."""

    def hook(_module, _args, output):
        h = output if isinstance(output, torch.Tensor) else output[0]
        x_hat = sae.reconstruct(h)
        linear = (h.double() @ lin.W + lin.b).float()
        out = {"sae": x_hat, "sae+linear": x_hat + linear, "sae+nonlinear": h - linear}[variant]
        out = out.clone()
        out[:, :clean] = h[:, :clean]
        return out if isinstance(output, torch.Tensor) else (out, *output[1:])

    handle = model.model.layers[LAYER].register_forward_hook(hook) if variant else None
    try:
        with torch.no_grad():
            logits = model(input_ids=ids).logits
    finally:
        if handle is not None:
            handle.remove()
    return F.cross_entropy(logits[:, clean:-1].reshape(-1, 64), ids[:, clean + 1 :].reshape(-1)).item()


def test_protocol_is_the_originals_from_256_positions_and_all_positions_below():
    assert downstream_protocol(1024) == downstream_protocol(256) == "clean_prefix_200"
    assert downstream_protocol(255) == downstream_protocol(128) == "all_positions"


@pytest.mark.parametrize(
    ("ctx", "protocol", "clean"), [(260, "clean_prefix_200", 200), (48, "all_positions", 0)]
)
def test_component_ce_matches_a_splice_by_hand(tiny, ctx, protocol, clean):
    model, sae, lin = tiny
    ids = torch.randint(0, 64, (3, ctx), generator=torch.Generator().manual_seed(2))
    ce = component_ce(model, sae, lin, ids, LAYER, batch_size=2)
    assert ce["protocol"] == protocol
    assert ce["original"] == pytest.approx(_by_hand(model, sae, lin, ids, None, clean), rel=1e-5)
    for variant in ("sae", "sae+linear", "sae+nonlinear"):
        assert ce[variant] == pytest.approx(_by_hand(model, sae, lin, ids, variant, clean), rel=1e-5)
    gap = ce["sae"] - ce["original"]  # a random model: the SAE may lower the CE, then no gap to close
    closed = 100 * (ce["sae"] - ce["sae+linear"]) / gap if gap > 0 else float("nan")
    assert ce["sae+linear % gap closed"] == pytest.approx(closed, rel=1e-6, nan_ok=True)


def test_clean_prefix_differs_from_splicing_every_position(tiny):
    """The two protocols are different numbers (the all-position one used to run at every length)."""
    model, sae, lin = tiny
    ids = torch.randint(0, 64, (2, 260), generator=torch.Generator().manual_seed(3))
    original = component_ce(model, sae, lin, ids, LAYER)
    every = component_ce(model, sae, lin, ids, LAYER, protocol="all_positions")
    assert every["protocol"] == "all_positions" and original["sae"] != pytest.approx(every["sae"], rel=1e-4)


def test_clean_prefix_on_a_short_context_is_refused(tiny):
    model, sae, lin = tiny
    with pytest.raises(ValueError, match="all_positions"):
        component_ce(
            model, sae, lin, torch.zeros(1, 128, dtype=torch.long), LAYER, protocol="clean_prefix_200"
        )
