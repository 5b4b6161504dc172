"""A small Llama that has memorised the built-in world's RAVEL and unlearning facts, for the RAVEL and
unlearning tests: the test world's pretrained model (d_model 32, 400k tokens) knows almost none of them
(6 of 300 RAVEL prompts, all 'continent', i.e. chance), so neither eval would have anything to measure.

Trained on the sentences themselves (prompt + value), with the test world's tokenizer, and cached under
`<repo>/.cache/saebench_facts-<hash>/` (git-ignored) like the `small_world` fixture."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

FACT_ATTRIBUTES = ("capital", "language", "continent")
_CONFIG = {"d": 64, "layers": 2, "steps": 300, "batch": 32, "lr": 3e-3, "world_seed": 0, "n_docs": 800}


def fact_sentences(tokenizer) -> list[str]:
    from lorasae.saebench import world_tasks as w

    prompts = w.builtin_ravel_prompts(tokenizer, _CONFIG["world_seed"], FACT_ATTRIBUTES)
    questions = w.builtin_unlearning_questions(_CONFIG["world_seed"], _CONFIG["n_docs"])
    return [f"{p.text} {p.label}." for p in prompts] + [
        f"{q.prompt} {q.choices[q.answer]}." for qs in questions.values() for q in qs
    ]


def ensure_fact_model(world_dir: Path) -> Path:
    """Folder (model + tokenizer) of the fact model, trained on first use (about a minute on one core)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    digest = hashlib.sha1(json.dumps({**_CONFIG, "world": str(world_dir.name)}, sort_keys=True).encode())
    folder = Path(__file__).resolve().parent.parent / ".cache" / f"saebench_facts-{digest.hexdigest()[:10]}"
    if (folder / "config.json").exists():
        return folder
    tok = AutoTokenizer.from_pretrained(world_dir)
    ids = [
        [tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"], tok.eos_token_id]
        for t in fact_sentences(tok)
    ]
    width = max(map(len, ids))
    x = torch.full((len(ids), width), tok.pad_token_id)
    labels = torch.full((len(ids), width), -100)
    for i, s in enumerate(ids):
        x[i, : len(s)] = torch.tensor(s)
        labels[i, : len(s)] = torch.tensor(s)
    d = _CONFIG["d"]
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=d, intermediate_size=2 * d, num_hidden_layers=_CONFIG["layers"],
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=_CONFIG["lr"])
    generator = torch.Generator().manual_seed(0)
    for _ in range(_CONFIG["steps"]):
        b = torch.randint(0, len(ids), (_CONFIG["batch"],), generator=generator)
        loss = model(input_ids=x[b], labels=labels[b]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(folder)
    return folder
