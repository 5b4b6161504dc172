"""The built-in tiny Llama: pretrained on the built-in corpus on first use, cached in `saved_models/tiny/`.

`ensure_tiny_model()` returns a folder that `AutoModelForCausalLM.from_pretrained` and
`AutoTokenizer.from_pretrained` load. A build generates the corpus, trains the tokenizer, pretrains a
`LlamaForCausalLM` on CPU (a few minutes by default) and writes everything into a temporary sibling
folder. A fresh build renames that folder into place. `tiny/` also holds the user's adapters and runs
(`saved_models/tiny/<SAE tag>/peft_.../`), so a missing or partial model is never fixed by deleting the
folder: the model is rebuilt beside it and only the model's own files (`MODEL_FILES`) are moved in,
`config.json` last (the mark of a complete model); everything else under `tiny/` is kept. An interrupted
build leaves `tiny/` as it was. `world.json` in the folder records the config, the split, train/val CE,
unigram entropy and timings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch
import transformers
from filelock import FileLock
from tqdm.auto import tqdm
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from lorasae.core.atomic import honour_umask_tree
from lorasae.core.errors import RunInterrupted

from .corpus import Document, split_corpus
from .model_folder import MODEL_FILES, missing_files, move_model_files
from .prose import prose_fingerprint
from .sizes import TinyWorldConfig, is_builtin_size, size_config
from .tokenizer import train_tokenizer

__all__ = [
    "TinyWorldConfig",
    "ensure_tiny_model",
    "build_tiny_model",
    "MODEL_FILES",
    "default_root",
    "TINY_DIRNAME",
    "WORLD_RECORD_KIND",
    "world_info",
    "world_seed",
]

TINY_DIRNAME = "tiny"
WORLD_RECORD_KIND = "builtin_world"
"""The run record's kind of a built model folder (`<folder>/run.json`, written with its files)."""
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def default_root() -> Path:
    """`<root>/saved_models` with the project root of `lorasae.core.paths` (env `LORASAE_ROOT`, else the repo)."""
    from lorasae.core import paths

    return paths.tiny_model_root()


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in _WEIGHT_FILES)


def ensure_tiny_model(
    root: Path | str | None = None,
    config: TinyWorldConfig | None = None,
    progress: bool = True,
    size: str = TINY_DIRNAME,
) -> Path:
    """Return `<root>/<size>` (`tiny`, or another built-in size of `lorasae.world.sizes` such as `tiny-s`),
    building the model first if it has no config and weights (see module docstring).

    An existing model is returned as is, whatever `config` says (default: the size's own config).
    Concurrent callers wait on a file lock, so only one of them builds; temp folders of killed builds
    (`.<size>.tmp-*`, made only by this module) are removed under the lock."""
    target = Path(root or default_root()) / size
    if _is_complete(target):
        return target
    if config is None:
        config = size_config(size)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{size}.lock")):
        if not _is_complete(target):
            for stale in target.parent.glob(f".{size}.tmp-*"):  # left by killed builds
                shutil.rmtree(stale, ignore_errors=True)
            build_tiny_model(target, config, progress=progress)
    return target


def build_tiny_model(target: Path, config: TinyWorldConfig, progress: bool = True) -> dict:
    """Build the model into a temp sibling of `target`, then move it into place (a fresh `target`) or
    move only its files into an existing `target` (everything else there is kept); return world.json."""
    target = Path(target)
    existing = target.exists()
    others = sorted(p.name for p in target.iterdir() if p.name not in MODEL_FILES) if existing else []
    if existing:
        print(
            f"{target} {missing_files(target)}: rebuilding the built-in model beside it and moving only the "
            f"model's files in; the {len(others)} other entries there (adapters, runs) are kept."
        )
    else:
        print(f"{target} {missing_files(target)}: building the built-in model there (a few minutes).")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    moving = False
    try:
        info = _build(tmp, config, progress)
        honour_umask_tree(tmp)  # mkdtemp's 0700, safetensors' 0600
        moving = True
        if existing:
            move_model_files(tmp, target)
            tmp.rmdir()
        else:
            os.replace(tmp, target)
    except KeyboardInterrupt as err:
        shutil.rmtree(tmp, ignore_errors=True)  # this run's own temp folder
        if not moving:
            now = "unchanged" + (" (adapters and runs there kept)" if existing else "")
        else:
            now = "complete" if _is_complete(target) else "still incomplete (adapters and runs there kept)"
        raise RunInterrupted(
            f"Interrupted while building the built-in model; its temp folder was removed and {target} is "
            f"{now}. The next command that needs the model rebuilds it if it is incomplete."
        ) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # this run's own temp folder
        raise
    return info


# ----------------------------------------------------------------------------------------------------
def _pack(ids_per_doc: list[list[int]], ctx_len: int, bos: int, eos: int) -> torch.Tensor:
    """GPT-style packing: a stream of documents separated by EOS, cut into chunks that start with BOS."""
    stream = [t for ids in ids_per_doc for t in (*ids, eos)]
    width = ctx_len - 1
    n = len(stream) // width
    body = torch.tensor(stream[: n * width], dtype=torch.long).view(n, width)
    return torch.cat([torch.full((n, 1), bos, dtype=torch.long), body], dim=1)


def _unigram_entropy(chunks: torch.Tensor, vocab_size: int) -> float:
    """Entropy (nats) of the next-token targets' unigram distribution."""
    counts = torch.bincount(chunks[:, 1:].reshape(-1), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


@torch.no_grad()
def _mean_ce(model: LlamaForCausalLM, chunks: torch.Tensor, batch_size: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(chunks), batch_size):
        batch = chunks[i : i + batch_size]
        logits = model(input_ids=batch).logits[:, :-1].float()
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
        ).item()
        count += batch[:, 1:].numel()
    model.train()
    return total / max(count, 1)


def _lr_at(step: int, total: int, cfg: TinyWorldConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def _pretrain(
    model: LlamaForCausalLM, train: torch.Tensor, cfg: TinyWorldConfig, progress: bool
) -> list[float]:
    steps = max(1, cfg.train_tokens // (cfg.batch_size * cfg.ctx_len))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    order, pos, losses = torch.randperm(len(train), generator=gen), 0, []
    model.train()
    bar = tqdm(range(steps), desc="pretraining tiny model", disable=not progress, unit="step")
    for step in bar:
        if pos + cfg.batch_size > len(order):  # next epoch
            order, pos = torch.randperm(len(train), generator=gen), 0
        batch = train[order[pos : pos + cfg.batch_size]]
        pos += cfg.batch_size
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, cfg)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    return losses


def _save_world(
    folder: Path, model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, info: dict
) -> None:
    from lorasae.core.records import write_record

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "world.json").write_text(json.dumps(info, indent=2) + "\n")
    identity = {k: info[k] for k in ("config", "prose_fingerprint", "versions")}
    results = {k: info[k] for k in ("n_params", "val_ce", "train_ce", "unigram_entropy", "seconds")}
    write_record(folder, WORLD_RECORD_KIND, identity, extra=results)


def _build(folder: Path, cfg: TinyWorldConfig, progress: bool) -> dict:
    t0, cpu0 = time.perf_counter(), time.process_time()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.num_threads or _available_cpus())
    try:
        val_docs, train_docs = split_corpus(cfg.seed, cfg.n_docs)
        order = random.Random(f"lorasae-pretrain-{cfg.seed}")
        order.shuffle(val_docs)  # pack a mix of domains into each chunk, as a shuffled data stream does
        order.shuffle(train_docs)
        t_corpus = time.perf_counter()
        tokenizer = train_tokenizer(
            (d.text for d in train_docs), cfg.vocab_size, model_max_length=cfg.ctx_len
        )

        def encode(ds: list[Document]) -> list[list[int]]:
            texts = [d.text for d in ds]
            return [e.ids for e in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]

        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        train = _pack(encode(train_docs), cfg.ctx_len, bos, eos)
        val = _pack(encode(val_docs), cfg.ctx_len, bos, eos)
        t_tok = time.perf_counter()

        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(cfg.llama_config(len(tokenizer)))
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        losses = _pretrain(model, train, cfg, progress)
        t_train = time.perf_counter()

        sample = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[: len(val)]]
        val_ce = _mean_ce(model, val, cfg.batch_size)
        train_ce = _mean_ce(model, sample, cfg.batch_size)
        unigram = _unigram_entropy(train, len(tokenizer))
        info = {
            "config": dataclasses.asdict(cfg),
            "seed": cfg.seed,
            "n_params": sum(p.numel() for p in model.parameters()),
            "corpus_docs": len(val_docs) + len(train_docs),
            "heldout_docs": len(val_docs),
            "train_chunks": len(train),
            "val_chunks": len(val),
            "heldout_tokens": val.numel(),
            "train_tokens_seen": len(losses) * cfg.batch_size * cfg.ctx_len,
            "epochs": len(losses) * cfg.batch_size / len(train),
            "val_ce": val_ce,
            "train_ce": train_ce,
            "final_train_loss": sum(losses[-20:]) / len(losses[-20:]),
            "unigram_entropy": unigram,
            "prose_fingerprint": prose_fingerprint(),
            "threads": torch.get_num_threads(),
            "seconds": {
                "corpus": t_corpus - t0,
                "tokenizer_and_packing": t_tok - t_corpus,
                "pretraining": t_train - t_tok,
                "total": time.perf_counter() - t0,
                "cpu_total": time.process_time() - cpu0,
            },
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }
        _save_world(folder, model, tokenizer, info)
    finally:
        torch.set_num_threads(old_threads)
    print(
        f"{folder.name.split('.tmp-')[0].lstrip('.')} world: val CE {val_ce:.3f} nats/token (train {train_ce:.3f}) vs unigram entropy "
        f"{unigram:.3f} nats/token; {info['n_params'] / 1e6:.2f}M params, "
        f"{info['train_tokens_seen'] / 1e6:.2f}M tokens, built in {info['seconds']['total']:.0f} s"
    )
    return info


def _available_cpus() -> int:
    """CPUs this process may use, capped at 8 (the tiny model's matrices gain nothing from more)."""
    from lorasae.core.runtime import available_cpus

    return min(8, available_cpus())


def world_info(model: str | Path | object | None) -> dict:
    """The `world.json` of the built-in world a model was trained on ({} for other models). `model` is a
    loaded model (its `name_or_path` is read), a model folder, or a model name (`tiny` resolves to the
    built-in one; hub names have no world)."""
    if model is not None and not isinstance(model, (str, Path)):
        get_base = getattr(model, "get_base_model", None)  # a PeftModel: the model under it
        base = get_base() if callable(get_base) else model
        model = str(getattr(base, "name_or_path", "") or "") or None
    if not model:
        return {}
    folder = Path(model).expanduser()
    if not folder.exists():
        size = str(model).removeprefix("builtin:")
        if not is_builtin_size(size):  # the registry's names of the built-in models
            return {}
        folder = ensure_tiny_model(size=size)
    info = folder / "world.json"
    return json.loads(info.read_text()) if info.is_file() else {}


def world_seed(model: str | Path | object | None) -> int:
    """The seed of the built-in world a model was trained on (`seed` in its `world.json`), else 0 (the
    built-in default)."""
    return int(world_info(model).get("seed", 0))
