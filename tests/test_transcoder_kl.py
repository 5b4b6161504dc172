"""Issue 28's last gap: `train_sae.py --architecture transcoder|skip_transcoder --init_sae <T> --objective
kl` KL fine-tunes a transcoder: KL to the original model's next-token distribution with layer L's MLP
output replaced by the transcoder's prediction + --kl_mse_weight × the FVU of that MLP output. The loss is
checked against an independent computation (the MLP module swapped for the transcoder), and on the
built-in world the fine-tune lowers the spliced CE of its parent and is saved, loaded and spliced."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lorasae.core.config_files import parse_with_config_file
from lorasae.sae.transcoder import Transcoder, TranscoderConfig
from lorasae.train.config import TrainSaeConfig
from lorasae.train.transcoder_parts import check_supported, transcoder_kl_step

pytestmark = pytest.mark.usefixtures("one_thread")


class _Replaced(torch.nn.Module):
    """An MLP replaced by the transcoder's prediction from its input (the independent splice)."""

    def __init__(self, sae: torch.nn.Module):
        super().__init__()
        self.sae = sae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae.reconstruct(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _swapped_logits(model, sae, ids: torch.Tensor, layer: int) -> torch.Tensor:
    block = model.model.layers[layer]
    original = block.mlp
    block.mlp = _Replaced(sae)
    try:
        return model(input_ids=ids).logits
    finally:
        block.mlp = original


def _mlp_io(model, ids: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    seen = []
    handle = model.model.layers[layer].mlp.register_forward_hook(lambda _m, a, o: seen.append((a[0], o)))
    model(input_ids=ids)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("chunked_head", [False, True])
def test_the_transcoder_kl_loss_is_the_kl_of_the_mlp_spliced_model_plus_the_weighted_fvu_of_the_mlp_output(
    skip, chunked_head
):
    from conftest import make_tiny_model

    from lorasae.train.objectives import e2e_head

    torch.manual_seed(0)
    model = make_tiny_model("llama", n_layers=3, d=16).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    sae = Transcoder(TranscoderConfig(d_in=16, d_sae=48, activation="topk", k=4, skip=skip))
    if skip:
        with torch.no_grad():
            sae.W_skip.normal_(0, 0.1)
    ids = torch.randint(0, 50, (3, 10))
    head = e2e_head(model, ids) if chunked_head else None
    if chunked_head:
        assert head is not None
    loss, out, stats = transcoder_kl_step(
        model, sae, ids, 1, 0.0, None, head=head, chunk_size=7, mse_weight=0.5
    )

    with torch.no_grad():
        clean = model(input_ids=ids).logits.double()
        spliced = _swapped_logits(model, sae, ids, 1).double()
        x, y = (t.reshape(-1, 16).double() for t in _mlp_io(model, ids, 1))
        y_hat = sae.reconstruct(x.float()).double()
    p_clean = F.softmax(clean, -1)
    kl = (p_clean * (F.log_softmax(clean, -1) - F.log_softmax(spliced, -1))).sum() / ids.shape[0]
    fvu = (y_hat - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum()
    assert float(loss.detach()) == pytest.approx(float(kl + 0.5 * fvu), rel=1e-4)
    assert float(stats.squared_error) == pytest.approx(float((y_hat - y).pow(2).sum()), rel=1e-4)
    assert stats.tokens == ids.numel() and float(stats.active) == 4 * ids.numel()
    loss.backward()  # gradients reach the transcoder, not the frozen model
    assert sae.W_enc.grad is not None and sae.W_enc.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_a_transcoder_still_refuses_e2e_positions_and_hidden_modifications_but_takes_objective_kl():
    check_supported(TrainSaeConfig(architecture="transcoder", objective="kl", init_sae="x"))
    with pytest.raises(ValueError, match=r"^--architecture transcoder does not support --e2e yet\.$"):
        check_supported(TrainSaeConfig(architecture="transcoder", e2e=True))
    with pytest.raises(ValueError, match="does not support --positions"):
        check_supported(TrainSaeConfig(architecture="skip_transcoder", objective="kl", positions="last"))


def _config(world_model: Path, *extra: str) -> TrainSaeConfig:
    base = ["--device", "cpu", "--model", str(world_model), "--dataset", "builtin", "--layer", "0", "--k", "2",
            "--expansion_factor", "4", "--num_val_tokens", "4096", "--curve_val_tokens", "4096", "--eval_every_pct", "100",
            "--checkpoint_every_pct", "100", "--log_every_steps", "50", "--transcoder_activation", "topk"]  # fmt: skip
    return parse_with_config_file(TrainSaeConfig, [*base, *extra])


@pytest.mark.parametrize("architecture", ["transcoder", "skip_transcoder"])
def test_a_transcoder_kl_fine_tune_lowers_its_spliced_ce_and_saves_one_that_loads_and_splices(
    architecture, world_model, out_root
):
    from lorasae.model.ce import ce_sum_and_count
    from lorasae.model.data import load_token_split
    from lorasae.model.load import load_model
    from lorasae.sae.registry import load_ours
    from lorasae.train.sae_trainer import train_sae
    from lorasae.train.validation import curve_chunks

    arch = ["--architecture", architecture]
    parent = train_sae(_config(world_model, *arch, "--num_train_tokens", "40k", "--lr", "3e-3"))
    tuned = train_sae(
        _config(world_model, *arch, "--init_sae", str(parent.final_dir), "--objective", "kl",
                "--num_train_tokens", "8k", "--lr", "1e-3", "--lr_warmup_steps", "1")
    )  # fmt: skip
    folder = Path(tuned.final_dir)
    assert (
        folder.parent.name == f"{Path(parent.final_dir).parent.name}__kl-ft__n-8000_lr-0.001_warmup-1"
    )  # not the default budget, lr or warm-up
    assert tuned.val_loss[0] == pytest.approx(parent.val_loss[-1], abs=1e-4)  # the parent, spliced
    assert tuned.val_loss[-1] < tuned.val_loss[0] - 0.005, tuned.val_loss
    assert tuned.val_l0 == pytest.approx(2.0)

    loaded = load_ours(folder)
    assert type(loaded) is Transcoder and loaded.cfg.skip == (architecture == "skip_transcoder")
    cfg = _config(world_model, *arch).resolved(*_shape(world_model))
    model, tokenizer = load_model(str(world_model), "cpu")
    split = load_token_split("builtin", tokenizer, cfg.ctx_len, cfg.num_val_tokens, cfg.seed)
    val = curve_chunks(split.val, 4096)
    original = model.model.layers[0].mlp
    model.model.layers[0].mlp = _Replaced(loaded)  # the independent splice of the saved transcoder
    try:
        with torch.no_grad():
            total, count = ce_sum_and_count(model, val, 16)
    finally:
        model.model.layers[0].mlp = original
    assert total / count == pytest.approx(tuned.val_loss[-1], rel=1e-4)


def _shape(world_model: Path) -> tuple[int, int | None, int]:
    from lorasae.model.load import model_shape

    shape = model_shape(str(world_model))
    return shape.d_model, shape.max_positions, shape.n_layers
