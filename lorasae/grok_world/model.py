"""The featurizing model of the grokking world: a small transformer built as a transformers
`LlamaForCausalLM`, so `lorasae.model.hooks.splice`, `residual_at`, SAE training and peft LoRA work on it as on
any causal LM (decoder layers at `model.layers`).

The seed's `featurizing_model_kwargs` (vocab_size, d_model, d_ff, n_heads, n_layers, use_geglu) map onto
a LlamaConfig. Llama's MLP is gated: `down(act(gate(x)) * up(x))`. With `use_geglu` the gate's activation
is GELU (GEGLU, Gemma's MLP); without it, ReLU (a gated ReLU MLP: there is no ungated MLP in Llama, so the
seed's plain-MLP option is approximated by the gate with the simplest activation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lorasae.grok_world.tasks import ModularTask


@dataclass
class GrokModelConfig:
    """Sizes of the featurizing transformer (the seed's featurizing_model_kwargs)."""

    d_model: int = 128
    """Residual width."""
    d_ff: int = 512
    """MLP hidden width."""
    n_heads: int = 4
    """Attention heads."""
    n_layers: int = 1
    """Decoder layers."""
    use_geglu: bool = False
    """GELU-gated MLP (GEGLU, as Gemma); otherwise a ReLU-gated MLP."""

    def llama_config(self, task: ModularTask) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=task.vocab_size,
            hidden_size=self.d_model,
            intermediate_size=self.d_ff,
            num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_heads,
            hidden_act="gelu_pytorch_tanh" if self.use_geglu else "relu",
            max_position_embeddings=4,
            tie_word_embeddings=False,
            rms_norm_eps=1e-5,
            pad_token_id=task.pad_token,
            bos_token_id=None,
            eos_token_id=task.eq_token,
        )


def build_model(task: ModularTask, cfg: GrokModelConfig, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised model for `task` (same seed → same weights)."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg.llama_config(task)).float()


def build_tokenizer(task: ModularTask) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over "0" … "p-1", "=", "<pad>" with the ids of `tasks` (so `load_model`, which
    loads a tokenizer with every model, loads the grok model; "3 5 =" → [3, 5, p])."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {str(i): i for i in range(task.prime)} | {"=": task.eq_token, "<pad>": task.pad_token}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<pad>", eos_token="=")


def last_logits(model: torch.nn.Module, input_ids: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Logits over the numbers 0 … p-1 at the last position (the answer slot), [N, p], in batches."""
    prime = int(input_ids[0, -1])  # the "=" token's id is p
    outs = [
        model(input_ids=chunk, use_cache=False).logits[:, -1, :prime] for chunk in input_ids.split(batch_size)
    ]
    return torch.cat(outs)


@torch.no_grad()
def accuracy(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of problems whose argmax answer is right."""
    return float((last_logits(model, input_ids).argmax(-1) == labels).float().mean())


def save_model(model: LlamaForCausalLM, task: ModularTask, folder: Path) -> Path:
    """`save_pretrained` of model and tokenizer into `folder` (the caller makes the write atomic)."""
    model.save_pretrained(folder)
    build_tokenizer(task).save_pretrained(folder)
    return folder
