"""Built-in lm-eval tasks for the offline world (SPEC §4.3): the formats of MMLU, HellaSwag and TruthfulQA
(multiple-choice log-likelihood), with answers the built-in model can learn from its corpus.

- `tiny_facts` (MMLU-like): a fact of the corpus, e.g. "The capital of Veloria is", and four answers (the
  true one and three other values of the same attribute); 0-shot by default, a `dev` split for few-shot.
  Answers are scored as continuations (MMLU's cloze form): a small model cannot do MMLU's letter format.
- `tiny_domains` (HellaSwag-like): the beginning of a fresh document of one domain (biographies, recipes,
  case reports, law, verse, science, encyclopedic entries) and four endings: its true next sentence and
  sentences from other documents of the same domain; `acc` and `acc_norm`.
- `tiny_truthful_mc1` / `tiny_truthful_mc2` (TruthfulQA-like): a question in the corpus's
  "Question: … / Answer: …" form after a fixed three-question preamble; mc1 = one true answer among four,
  mc2 = normalised probability mass on the true answers (the short answer and the full sentence).

`write_builtin_tasks(folder, seed, n_docs)` writes the data (jsonl) and YAML files into one folder, which
is the `include_path` of lm-eval's `TaskManager`. Same arguments → byte-identical files; the folder is only
rewritten when its content changes. All tasks carry the tag `tiny_benchmarks`. The YAML files name their
data relative to the output root when the folder lies inside it (`paths.portable`), and lm-eval loads it
through `load_data` (`custom_dataset`), so a moved root still runs them.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lorasae.core import paths
from lorasae.core.atomic import atomic_dir

BUILTIN_TAG = "tiny_benchmarks"
BUILTIN_TASKS: tuple[str, ...] = ("tiny_facts", "tiny_domains", "tiny_truthful_mc1", "tiny_truthful_mc2")
N_CHOICES = 4
FEWSHOT_DOCS = 5
"""Documents held out of each task for few-shot examples (`--num_fewshot`), as MMLU's `dev` split."""
DOMAIN_TASK_DOMAINS: tuple[str, ...] = ("facts", "biography", "recipes", "medical", "law", "verse", "science")
DOCS_PER_DOMAIN = 40
MAX_CTX_CHARS = 200
MAX_END_CHARS = 80
"""Longest `tiny_domains` context and ending: together they stay inside the tiny model's 128 positions."""
TRUTHFUL_PREAMBLE = 3
MANIFEST = "manifest.json"
DATASETS_CACHE = ".datasets_cache"

# The question the corpus asks about each quizzed country attribute ("Question: … / Answer: …").
QUESTIONS: dict[str, str] = {
    "capital": "What is the capital of {name}?",
    "language": "What language is spoken in {name}?",
    "currency": "What is the currency of {name}?",
    "export": "What is the main export of {name}?",
    "animal": "What is the national animal of {name}?",
    "continent": "On which continent is {name}?",
}


def is_builtin_task(name: str) -> bool:
    return name == BUILTIN_TAG or name in BUILTIN_TASKS


def _shuffled_choices(rng: random.Random, answer: str, distractors: Sequence[str]) -> tuple[list[str], int]:
    choices = [answer, *distractors[: N_CHOICES - 1]]
    order = list(range(len(choices)))
    rng.shuffle(order)
    return [choices[i] for i in order], order.index(0)


# --- tiny_facts (MMLU-like) -----------------------------------------------------------------------


def facts_docs(seed: int = 0, n_docs: int | None = None) -> list[dict[str, Any]]:
    """One document per quiz fact of the world's corpus, in a seeded random order (so that `--limit`
    takes a mix of attributes): `{"subject", "question", "choices", "answer"}`."""
    from lorasae.world.corpus import quiz_facts

    rng = random.Random(f"lorasae-bench-facts-{seed}")
    facts = list(quiz_facts(seed, n_docs, n_distractors=N_CHOICES - 1))
    rng.shuffle(facts)
    docs = []
    for fact in facts:
        choices, answer = _shuffled_choices(rng, fact.answer, fact.distractors)
        subject = fact.prefix.split(" of ")[0].removeprefix("The ").strip().lower()
        docs.append({"subject": subject, "question": fact.prefix, "choices": choices, "answer": answer})
    return docs


# --- tiny_domains (HellaSwag-like) ----------------------------------------------------------------

_BOUNDARY = re.compile(r"(?<=[.!?])[ \t]+(?=\S)|\n+")
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Prof|Ltd|Co|No|vs|etc)|\b[A-Z])\.$")


def _segments(text: str) -> list[tuple[str, str]]:
    """Split a document into `(separator, sentence or line)` pieces; joining them gives the text back
    (up to trailing whitespace). The first separator is empty."""
    pieces: list[tuple[str, str]] = []
    start, sep = 0, ""
    for match in _BOUNDARY.finditer(text):
        piece = text[start : match.start()]
        if not match.group().startswith("\n") and _ABBREVIATION.search(piece):
            continue  # "Mr. Watson" is one sentence
        if piece.strip():
            pieces.append((sep, piece))
        sep, start = match.group(), match.end()
    tail = text[start:].rstrip()
    if tail.strip():
        pieces.append((sep, tail))
    return pieces


def domains_docs(
    seed: int = 0, per_domain: int = DOCS_PER_DOMAIN, domains: Sequence[str] = DOMAIN_TASK_DOMAINS
) -> list[dict[str, Any]]:
    """`{"domain", "ctx", "endings", "label"}`: the start of a fresh document (not a training document)
    and four endings — its next sentence (or line) and ones from other documents of the same domain,
    each with the true separator in front (the task's target delimiter is empty)."""
    from lorasae.world.corpus import domain_texts

    rng = random.Random(f"lorasae-bench-domains-{seed}")
    docs: list[dict[str, Any]] = []
    for domain in domains:
        texts = domain_texts(domain, 3 * per_domain, seed)
        segmented = [s for s in (_segments(t) for t in texts) if len(s) >= 3]
        pool = [
            piece.strip() for segs in segmented for _sep, piece in segs[1:] if len(piece) <= MAX_END_CHARS
        ]
        made = 0
        for segs in segmented:
            if made == per_domain:
                break
            # a cut leaving at least two pieces of context (one if the first is long), not too long
            cuts = [
                j
                for j in range(1, len(segs))
                if len("".join(sep + piece for sep, piece in segs[:j])) <= MAX_CTX_CHARS
                and len(segs[j][1].strip()) <= MAX_END_CHARS
            ]
            cuts = [j for j in cuts if j >= 2] or cuts
            if not cuts:
                continue
            cut = rng.choice(cuts)
            ctx = "".join(sep + piece for sep, piece in segs[:cut]).strip()
            sep, true_end = segs[cut][0], segs[cut][1].strip()
            sep = sep or " "
            wrong: list[str] = []
            while len(wrong) < N_CHOICES - 1:
                candidate = rng.choice(pool)
                if candidate != true_end and candidate not in wrong and candidate not in ctx:
                    wrong.append(candidate)
            endings, label = _shuffled_choices(rng, true_end, wrong)
            docs.append({"domain": domain, "ctx": ctx, "endings": [sep + e for e in endings], "label": label})
            made += 1
    rng.shuffle(docs)
    return docs


# --- tiny_truthful (TruthfulQA-like) --------------------------------------------------------------


def _attribute_of(fact: Any, world: Any) -> tuple[str, str] | None:
    """(attribute, country name) of a quiz fact about a country, None for other facts."""
    for country in world.countries:
        if not re.search(rf"\b{re.escape(country.name)}\b", fact.prefix):
            continue
        for attr in QUESTIONS:
            if getattr(country, attr, None) == fact.answer:
                return attr, country.name
    return None


def truthful_docs(seed: int = 0, n_docs: int | None = None) -> list[dict[str, Any]]:
    """`{"question", "mc1_targets": {"choices", "labels"}, "mc2_targets": {...}}` in TruthfulQA's layout
    (true choices first), plus the shared few-shot `preamble`. mc2's true answers: the short answer
    ("Marstad.") and the corpus sentence ("The capital of Veloria is Marstad."); its false ones: the
    same for each distractor."""
    from lorasae.world.corpus import build_world, quiz_facts

    world = build_world(seed)
    rng = random.Random(f"lorasae-bench-truthful-{seed}")
    items = []
    for fact in quiz_facts(seed, n_docs, n_distractors=N_CHOICES - 1):
        found = _attribute_of(fact, world)
        if found is not None:
            attr, name = found
            items.append((QUESTIONS[attr].format(name=name), fact))
    rng.shuffle(items)
    preamble_items, items = items[:TRUTHFUL_PREAMBLE], items[TRUTHFUL_PREAMBLE:]
    preamble = "\n".join(f"Question: {q}\nAnswer: {f.prefix} {f.answer}." for q, f in preamble_items)
    docs = []
    for question, fact in items:
        false = list(fact.distractors[: N_CHOICES - 1])
        mc1 = [f"{fact.answer}.", *(f"{d}." for d in false)]
        mc2_true = [f"{fact.answer}.", f"{fact.prefix} {fact.answer}."]
        mc2_false = [x for d in false for x in (f"{d}.", f"{fact.prefix} {d}.")]
        docs.append(
            {
                "preamble": preamble,
                "question": question,
                "mc1_targets": {"choices": mc1, "labels": [1] + [0] * len(false)},
                "mc2_targets": {"choices": mc2_true + mc2_false, "labels": [1, 1] + [0] * len(mc2_false)},
            }
        )
    return docs


def process_results_mc2(doc: dict[str, Any], results: Sequence[tuple[float, bool]]) -> dict[str, float]:
    """TruthfulQA's mc2: the normalised probability mass of the true choices (computed stably)."""
    ll = np.array([r[0] for r in results], dtype=np.float64)
    probs = np.exp(ll - ll.max())
    labels = np.array(doc["mc2_targets"]["labels"])
    return {"acc": float(probs[labels == 1].sum() / probs.sum())}


# --- writing the task folder ----------------------------------------------------------------------

_METRIC = """  - metric: {name}
    aggregation: mean
    higher_is_better: true
"""


def _yaml(
    task: str,
    splits: dict[str, Path],
    body: str,
    metrics: Sequence[str] = ("acc",),
) -> str:
    files = "".join(f"    {split}: {json.dumps(paths.portable(path))}\n" for split, path in splits.items())
    # the `datasets` cache of these files stays in the task folder, not in the user's hub cache
    cache = json.dumps(paths.portable(next(iter(splits.values())).parent / DATASETS_CACHE))
    return (
        f"task: {task}\ntag:\n  - {BUILTIN_TAG}\ndataset_path: json\ndataset_name: null\n"
        "custom_dataset: !function lorasae.lmeval.tasks.load_data\n"
        f"dataset_kwargs:\n  cache_dir: {cache}\n  data_files:\n{files}"
        f"output_type: multiple_choice\n{body}"
        "metric_list:\n" + "".join(_METRIC.format(name=m) for m in metrics) + "metadata:\n  version: 1.0\n"
    )


def load_data(data_files: dict[str, str], cache_dir: str, **_: Any) -> Any:
    """lm-eval's `custom_dataset` of the built-in tasks: their jsonl splits, whose paths in the YAML are
    relative to the output root (`paths.from_portable`); lm-eval passes the task's metadata too (ignored)."""
    import datasets

    files = {split: str(paths.from_portable(path)) for split, path in data_files.items()}
    return datasets.load_dataset("json", data_files=files, cache_dir=str(paths.from_portable(cache_dir)))


def _jsonl(docs: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n" for doc in docs)


def task_files(folder: Path, seed: int = 0, n_docs: int | None = None) -> dict[str, str]:
    """File name → content of the task folder (data paths inside the YAML point into `folder`)."""
    folder = Path(folder).resolve()
    facts = facts_docs(seed, n_docs)
    domains = domains_docs(seed)
    truthful = truthful_docs(seed, n_docs)
    data = {
        "tiny_facts_dev.jsonl": facts[:FEWSHOT_DOCS],
        "tiny_facts_test.jsonl": facts[FEWSHOT_DOCS:],
        "tiny_domains_train.jsonl": domains[:FEWSHOT_DOCS],
        "tiny_domains_validation.jsonl": domains[FEWSHOT_DOCS:],
        "tiny_truthful_validation.jsonl": truthful,
    }
    files = {name: _jsonl(docs) for name, docs in data.items()}
    files["tiny_facts.yaml"] = _yaml(
        "tiny_facts",
        {"dev": folder / "tiny_facts_dev.jsonl", "test": folder / "tiny_facts_test.jsonl"},
        "test_split: test\nfewshot_split: dev\nfewshot_config:\n  sampler: first_n\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: choices\ndoc_to_target: answer\n',
    )
    files["tiny_domains.yaml"] = _yaml(
        "tiny_domains",
        {
            "train": folder / "tiny_domains_train.jsonl",
            "validation": folder / "tiny_domains_validation.jsonl",
        },
        "training_split: train\nvalidation_split: validation\n"
        'doc_to_text: "{{ctx}}"\ndoc_to_choice: endings\ndoc_to_target: label\ntarget_delimiter: ""\n',
        metrics=("acc", "acc_norm"),
    )
    truthful_body = (
        "validation_split: validation\nnum_fewshot: 0\n"
        'doc_to_text: "{{preamble}}\\nQuestion: {{question}}\\nAnswer:"\ndoc_to_target: 0\n'
    )
    truthful_split = {"validation": folder / "tiny_truthful_validation.jsonl"}
    files["tiny_truthful_mc1.yaml"] = _yaml(
        "tiny_truthful_mc1",
        truthful_split,
        truthful_body + 'doc_to_choice: "{{mc1_targets.choices}}"\n',
    )
    files["tiny_truthful_mc2.yaml"] = _yaml(
        "tiny_truthful_mc2",
        truthful_split,
        truthful_body + 'doc_to_choice: "{{mc2_targets.choices}}"\n'
        "process_results: !function lorasae.lmeval.tasks.process_results_mc2\n",
    )
    return files


def write_builtin_tasks(folder: str | Path, seed: int = 0, n_docs: int | None = None) -> Path:
    """Generate the built-in tasks of world `seed` (corpus of `n_docs` generated documents, as the model
    was trained on) into `folder`; returns it, for `TaskManager(include_path=...)`."""
    folder = Path(folder).resolve()
    files = task_files(folder, seed, n_docs)
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    manifest = folder / MANIFEST
    if manifest.exists():
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("sha256") == digest:
                return folder
        except (json.JSONDecodeError, OSError):
            pass
    with atomic_dir(folder) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        info = {"seed": seed, "n_docs": n_docs, "tasks": list(BUILTIN_TASKS), "sha256": digest}
        (tmp / MANIFEST).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return folder
