"""Hub data for RAVEL and unlearning on a GPU box.

- RAVEL: SAEBench's prompt files (`adamkarvonen/ravel_prompts`, a dataset repo: per entity class
  `ravel_<class>_entity_attributes.json` {entity: {attribute: value}} and
  `ravel_<class>_attribute_to_prompts.json` {attribute: ["... %s ..." templates]}), turned into
  `RavelPrompt`s as SAEBench's `RAVELInstance.build_and_tokenize_prompts` does (the entity's last token is
  the one before the template's remainder).
- Unlearning: SAEBench's question sets — WMDP-bio (`cais/wmdp`, forget) and four MMLU subjects
  (`cais/mmlu`, retain) — and its corpora for feature sparsity: the bio forget corpus (gated by CAIS: pass
  a local copy, e.g. `bio-forget-corpus.jsonl`, as SAEBench also asks) and WikiText (retain).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from lorasae.model.data import load_texts
from lorasae.saebench.world_tasks import ClozeQuestion, RavelPrompt, prompt_ids

RAVEL_REPO = "adamkarvonen/ravel_prompts"
RAVEL_ENTITY_ATTRIBUTES: dict[str, list[str]] = {
    "city": ["Country", "Continent", "Language"],
    "nobel_prize_winner": ["Country of Birth", "Field", "Gender"],
}
"""SAEBench's default `entity_attribute_selection`."""

WMDP_BIO = "wmdp-bio"
MMLU_RETAIN_SUBJECTS: tuple[str, ...] = (
    "high_school_us_history",
    "college_computer_science",
    "high_school_geography",
    "human_aging",
)
RETAIN_CORPUS = ("wikitext", "wikitext-103-raw-v1")


def _questions(rows: Any, subject: str) -> list[ClozeQuestion]:
    return [ClozeQuestion(subject, r["question"], tuple(r["choices"]), int(r["answer"])) for r in rows]


def hub_unlearning_questions() -> dict[str, list[ClozeQuestion]]:
    """{subject: questions}: WMDP-bio first (the forget set), then SAEBench's MMLU retain subjects."""
    from datasets import load_dataset

    out = {WMDP_BIO: _questions(load_dataset("cais/wmdp", WMDP_BIO, split="test"), WMDP_BIO)}
    for subject in MMLU_RETAIN_SUBJECTS:
        out[subject] = _questions(load_dataset("cais/mmlu", subject, split="test"), subject)
    return out


def hub_unlearning_corpora(forget_corpus: str, n_docs: int, seed: int) -> tuple[list[str], list[str]]:
    """(forget texts from the local `forget_corpus` file, retain texts from WikiText), `n_docs` each."""
    from datasets import load_dataset

    forget = list(itertools.islice((t for t in load_texts(forget_corpus, seed=seed) if t.strip()), n_docs))
    wiki = load_dataset(*RETAIN_CORPUS, split="test")
    retain = list(itertools.islice((r["text"] for r in wiki if len(r["text"].strip()) > 100), n_docs))
    return forget, retain


# --- RAVEL ---------------------------------------------------------------------------------------


def ravel_prompts_from_files(
    folder: str | Path, entity_class: str, attributes: list[str], tokenizer: Any
) -> list[RavelPrompt]:
    """Every (entity, template) prompt of `attributes` from SAEBench's RAVEL files in `folder`."""
    folder = Path(folder)
    values = json.loads((folder / f"ravel_{entity_class}_entity_attributes.json").read_text())
    templates = json.loads((folder / f"ravel_{entity_class}_attribute_to_prompts.json").read_text())
    prompts = []
    for entity, attrs in values.items():
        for attribute in attributes:
            label = attrs.get(attribute)
            if not label:
                continue
            for template in templates.get(attribute, []):
                text = template % entity
                ids = prompt_ids(tokenizer, text)
                remainder = tokenizer(template.split("%s")[1], add_special_tokens=False)["input_ids"]
                pos = len(ids) - len(remainder) - 1
                if pos >= (1 if tokenizer.bos_token_id is not None else 0):
                    prompts.append(
                        RavelPrompt(text, entity, attribute, str(label), template, tuple(ids), pos)
                    )
    return prompts


def hub_ravel_prompts(
    tokenizer: Any, selection: dict[str, list[str]], cache_dir: str | Path
) -> dict[str, list[RavelPrompt]]:
    """{entity class: prompts} from SAEBench's RAVEL files, downloaded into `cache_dir` on first use."""
    from huggingface_hub import snapshot_download

    folder = Path(
        snapshot_download(RAVEL_REPO, repo_type="dataset", local_dir=cache_dir, allow_patterns="*.json")
    )
    found = {p.name: p.parent for p in folder.rglob("ravel_*.json")}
    out = {}
    for entity_class, attributes in selection.items():
        where = found.get(f"ravel_{entity_class}_entity_attributes.json")
        if where is None:
            raise FileNotFoundError(f"{RAVEL_REPO} has no RAVEL files for entity class {entity_class!r}")
        out[entity_class] = ravel_prompts_from_files(where, entity_class, attributes, tokenizer)
    return out
