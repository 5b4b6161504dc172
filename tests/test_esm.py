"""ESM2 (the seed's protein model type) offline: a tiny random `EsmConfig` + ESM tokenizer saved to disk and
a generated FASTA file. FASTA records are packed like text (`<cls>` first, `<eos>` between proteins);
train_sae.py trains an SAE on the masked LM's residual stream, and its spliced metric is the masked-LM
loss on a fixed ~15 % of positions (next-token CE means nothing for a masked LM), checked by hand."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lorasae.core.config_files import parse_with_config_file
from lorasae.model.ce import mean_ce, mlm_mask
from lorasae.model.data import fasta_sequences, load_token_split
from lorasae.model.hooks import splice
from lorasae.model.load import decoder_layers, is_masked_lm, load_model
from lorasae.sae import TopKSAE
from lorasae.train.config import TrainSaeConfig
from lorasae.train.sae_trainer import train_sae

pytestmark = pytest.mark.usefixtures("one_thread")

AMINO = "LAGVSERTIDPKQNFYMHWC"


def write_tiny_esm(folder: Path) -> Path:
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    vocab = [
        "<cls>",
        "<pad>",
        "<eos>",
        "<unk>",
        *AMINO,
        "X",
        "B",
        "U",
        "Z",
        "O",
        ".",
        "-",
        "<null_1>",
        "<mask>",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = EsmTokenizer(str(folder / "vocab.txt"))
    config = EsmConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=66, pad_token_id=1, mask_token_id=len(vocab) - 1, position_embedding_type="rotary",
        token_dropout=True, emb_layer_norm_before=False,
    )  # fmt: skip
    torch.manual_seed(0)
    EsmForMaskedLM(config).save_pretrained(folder / "esm")
    tokenizer.save_pretrained(folder / "esm")
    return folder / "esm"


def write_fasta(path: Path, n: int = 400) -> Path:
    rng = random.Random(0)
    lines = []
    for i in range(n):
        seq = "".join(rng.choice(AMINO) for _ in range(rng.randint(20, 90)))
        lines += [f">protein_{i} generated", seq[:40], seq[40:]]  # records over two lines
    path.write_text("\n".join(line for line in lines if line) + "\n")
    return path


def test_fasta_records_are_documents(tmp_path):
    path = tmp_path / "x.fasta"
    path.write_text(">a first\nMKT\nAYI\n\n>b\nGG G\n")
    assert list(fasta_sequences(path)) == ["MKTAYI", "GGG"]
    (tmp_path / "bad.fa").write_text("MKT\n>a\nG\n")
    with pytest.raises(ValueError, match="not FASTA"):
        list(fasta_sequences(tmp_path / "bad.fa"))


def test_esm_sae_trains_and_its_spliced_metric_is_the_masked_lm_loss(tmp_path, out_root):
    model_dir = write_tiny_esm(tmp_path / "world")
    fasta = write_fasta(tmp_path / "proteins.fasta")
    model, tokenizer = load_model(str(model_dir), "cpu")
    assert is_masked_lm(model) and len(decoder_layers(model)) == 3
    val = load_token_split(str(fasta), tokenizer, 32, 256).val
    assert (val[:, 0] == tokenizer.cls_token_id).all() and (val == tokenizer.eos_token_id).any()
    args = ["--device", "cpu", "--model", str(model_dir), "--dataset", str(fasta), "--layer", "1",
            "--num_train_tokens", "3840", "--ctx_len", "32", "--batch_size", "4", "--num_val_tokens", "256",
            "--val_batch_size", "4", "--k", "4", "--expansion_factor", "4", "--eval_every_pct", "50"]  # fmt: skip
    result = train_sae(parse_with_config_file(TrainSaeConfig, args))
    sae = TopKSAE.load(result.final_dir)
    # the masked-LM loss by hand: the fixed mask, the mask token, CE at the masked positions only
    special = [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.cls_token_id]
    mask = mlm_mask(val, special)
    assert 0.08 < mask.float().mean() < 0.2 and not mask[:, 0].any()
    masked = val.masked_fill(mask, tokenizer.mask_token_id)
    with torch.no_grad():
        base = F.cross_entropy(model(input_ids=masked).logits[mask], val[mask])
        with splice(model, {1: lambda h: sae.reconstruct(h).to(h.dtype)}):
            spliced = F.cross_entropy(model(input_ids=masked).logits[mask], val[mask])
    assert result.base_ce == pytest.approx(float(base), rel=1e-5)
    assert mean_ce(model, val, 4) == pytest.approx(float(base), rel=1e-5)
    assert result.val_loss[-1] == pytest.approx(float(spliced), rel=1e-4)
    assert result.val_fvu < 1.0 and result.val_l0 <= 4


def test_protein_models_need_a_dataset():
    from lorasae.model.data import default_dataset

    with pytest.raises(ValueError, match="--dataset file.fasta"):
        default_dataset("esm")
    assert default_dataset("tiny") == "builtin"


def test_token_dropout_makes_masked_input_residuals_differ_from_unmasked_ones(tmp_path):
    """The issue's premise on the tiny ESM (token_dropout on, as in the released configs): with 15 % of the
    positions masked, the residuals at the *unmasked* positions of layer 0 are larger (the embeddings are
    rescaled by 0.88 / observed mask ratio), and the `<mask>` positions are a different input again. An
    SAE trained on unmasked inputs never sees either, so it must train on the scoring distribution."""
    from lorasae.model.ce import masked_lm_inputs
    from lorasae.model.hooks import residual_at

    model_dir = write_tiny_esm(tmp_path / "world")
    model, tokenizer = load_model(str(model_dir), "cpu")
    val = load_token_split(str(write_fasta(tmp_path / "p.fasta")), tokenizer, 32, 512).val
    masked = masked_lm_inputs(model, val)
    mask = masked == tokenizer.mask_token_id
    assert 0.08 < mask.float().mean() < 0.2
    assert torch.equal(
        mask, mlm_mask(val, [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.cls_token_id])
    )
    with torch.no_grad():
        plain, under_mask = residual_at(model, val, 0), residual_at(model, masked, 0)
    keep = ~mask & (val != tokenizer.cls_token_id)
    ratio = under_mask[keep].norm(dim=-1).mean() / plain[keep].norm(dim=-1).mean()
    assert ratio > 1.02  # larger at the unmasked positions
    # a causal LM's inputs are left alone
    from conftest import make_tiny_model

    ids = torch.randint(4, 50, (2, 8))
    assert masked_lm_inputs(make_tiny_model("llama"), ids) is ids


def test_masked_lm_sae_trains_and_validates_on_the_masked_inputs_it_is_scored_on(
    tmp_path, out_root, monkeypatch
):
    """train_sae.py on a masked LM: every training batch's rows come from the fixed-mask inputs of the
    masked-LM loss (so `<mask>` positions are among them) and the validation FVU is measured on them too."""
    import lorasae.train.harvest as harvest
    from lorasae.model.ce import masked_lm_inputs
    from lorasae.model.hooks import residual_at

    model_dir = write_tiny_esm(tmp_path / "world")
    fasta = write_fasta(tmp_path / "proteins.fasta")
    model, tokenizer = load_model(str(model_dir), "cpu")
    seen: list[torch.Tensor] = []

    def recording_residual_at(m, ids, layer):
        seen.append(ids.detach().cpu())
        return residual_at(m, ids, layer)

    monkeypatch.setattr(harvest, "residual_at", recording_residual_at)  # the SAE's training activations
    args = ["--device", "cpu", "--model", str(model_dir), "--dataset", str(fasta), "--layer", "1",
            "--num_train_tokens", "1280", "--ctx_len", "32", "--batch_size", "4", "--num_val_tokens", "256",
            "--val_batch_size", "4", "--k", "4", "--expansion_factor", "4", "--eval_every_pct", "50",
            "--harvest_steps", "1"]  # fmt: skip
    result = train_sae(parse_with_config_file(TrainSaeConfig, args))
    ids = torch.cat(seen)
    mask_share = (ids == tokenizer.mask_token_id).float().mean()
    assert len(seen) == 10 and 0.08 < mask_share < 0.2  # every step's batch is masked, at the fixed rate
    sae = TopKSAE.load(result.final_dir)
    val = load_token_split(str(fasta), tokenizer, 32, 256).val
    with torch.no_grad():
        x = residual_at(model, masked_lm_inputs(model, val), 1).reshape(-1, 32)
        fvu = float((sae.reconstruct(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert result.val_fvu == pytest.approx(fvu, rel=1e-4)


def test_masked_lm_crosscoder_validates_on_the_masked_inputs(tmp_path, out_root):
    """A crosscoder on a masked LM: each source's validation FVU is measured on the masked-LM inputs too."""
    from lorasae.model.ce import masked_lm_inputs
    from lorasae.model.hooks import residual_at
    from lorasae.sae.crosscoder import Crosscoder

    model_dir = write_tiny_esm(tmp_path / "world")
    fasta = write_fasta(tmp_path / "proteins.fasta")
    model, tokenizer = load_model(str(model_dir), "cpu")
    args = ["--device", "cpu", "--model", str(model_dir), "--dataset", str(fasta), "--architecture", "crosscoder",
            "--layers", "0", "1", "--num_train_tokens", "1280", "--ctx_len", "32", "--batch_size", "4",
            "--num_val_tokens", "256", "--val_batch_size", "4", "--k", "4", "--expansion_factor", "4",
            "--eval_every_pct", "50"]  # fmt: skip
    result = train_sae(parse_with_config_file(TrainSaeConfig, args))
    coder = Crosscoder.load(result.final_dir)
    val = masked_lm_inputs(model, load_token_split(str(fasta), tokenizer, 32, 256).val)
    with torch.no_grad():
        xs = [residual_at(model, val, layer).reshape(-1, 32) for layer in (0, 1)]
        for layer, x, rec in zip((0, 1), xs, coder.reconstruct(xs)):
            fvu = float((rec - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
            assert result.per_source[layer]["val_fvu"] == pytest.approx(fvu, rel=1e-4)
