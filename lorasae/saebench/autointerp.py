"""SAEBench's autointerp eval (`evals/autointerp/main.py`), natively, against any OpenAI-compatible
chat-completions endpoint (base URL and judge model configurable).

For each sampled live latent: windows of ±`buffer` tokens around its top activations and around
importance-sampled weaker activations (probability ∝ activation², excluding the top ones) are collected.
Generation phase: the judge sees top and importance-sampled windows with active tokens marked `<<tok>>`
and writes a one-line explanation. Scoring phase: the judge sees the explanation and a shuffled mix of
held-out top windows, importance-sampled windows and random windows, and lists the ones where the latent
fires; the score is the fraction of windows classified correctly. `autointerp_score` is the mean over
latents. Without an API key the eval is skipped with a message.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tabulate import tabulate
from torch import Tensor

from lorasae.core.llm import (
    API_KEY_ENV,
    DEFAULT_LLM_MODEL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    LLMClient,
    LLMSettings,
    Messages,
)
from lorasae.saebench.activations import collect_residuals, d_sae_of, keep_mask, sae_encode
from lorasae.saebench.schema import EVAL_TYPE_AUTOINTERP, eval_output

# --- window indexing (SAEBench's sae_bench_utils/indexing_utils.py) -------------------------------


def get_k_largest_indices(x: Tensor, k: int, buffer: int, no_overlap: bool = True) -> Tensor:
    """(row, col) of the k largest values of x [B, S], cols restricted to [buffer, S − buffer); with
    `no_overlap`, no two picks in the same row closer than `buffer`. Returns [≤k, 2]."""
    inner = x[:, buffer : x.shape[1] - buffer]
    order = inner.flatten().argsort(descending=True, stable=True)
    rows = (order // inner.shape[1]).tolist()
    cols = (order % inner.shape[1] + buffer).tolist()
    picked: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for r, c in zip(rows, cols):
        if len(picked) == k:
            break
        if no_overlap and (r, c) in seen:
            continue
        picked.append((r, c))
        if no_overlap:
            seen.update((r, c + off) for off in range(-buffer, buffer + 1))
    return torch.tensor(picked, dtype=torch.long).reshape(-1, 2)


def get_iw_sample_indices(x: Tensor, k: int, buffer: int, generator: torch.Generator) -> Tensor:
    """k (row, col) drawn without replacement with probability ∝ x² (cols in [buffer, S − buffer))."""
    inner = x[:, buffer : x.shape[1] - buffer].float().pow(2)
    probs = inner.flatten() / inner.sum()
    idx = torch.multinomial(probs, k, replacement=False, generator=generator)
    return torch.stack((idx // inner.shape[1], idx % inner.shape[1] + buffer), dim=1)


def index_with_buffer(x: Tensor, indices: Tensor, buffer: int) -> Tensor:
    """Windows x[row, col − buffer : col + buffer + 1] for each (row, col): [n, 2·buffer + 1, ...]."""
    offsets = torch.arange(-buffer, buffer + 1)
    rows = indices[:, 0:1].expand(-1, offsets.numel())
    cols = indices[:, 1:2] + offsets
    return x[rows, cols]


# --- examples and prompts ------------------------------------------------------------------------


class Example:
    """One window: its tokens, the latent's activations on them, and whether it is active anywhere."""

    def __init__(self, str_toks: list[str], acts: list[float], act_threshold: float):
        self.str_toks = str_toks
        self.acts = acts
        self.toks_are_active = [a > act_threshold for a in acts]
        self.is_active = any(self.toks_are_active)

    def to_str(self, mark_toks: bool = False) -> str:
        text = "".join(
            f"<<{tok}>>" if (mark_toks and active) else tok
            for tok, active in zip(self.str_toks, self.toks_are_active)
        )
        return text.replace("�", "").replace("\n", "↵")


def generation_prompt(examples: list[Example], use_demos: bool) -> Messages:
    examples_str = "\n".join(f"{i + 1}. {ex.to_str(mark_toks=True)}" for i, ex in enumerate(examples))
    system = (
        "We're studying neurons in a neural network. Each neuron activates on some particular word/words/substring/"
        "concept in a short document. The activating words in each document are indicated with << ... >>. We will "
        "give you a list of documents on which the neuron activates, in order from most strongly activating to least "
        "strongly activating. Look at the parts of the document the neuron activates for and summarize in a single "
        "sentence what the neuron is activating on. Try not to be overly specific in your explanation. Note that some "
        "neurons will activate only on specific words or substrings, but others will activate on most/all words in a "
        "sentence provided that sentence contains some particular concept. Your explanation should cover most or all "
        "activating words (for example, don't give an explanation which is specific to a single word if all words in "
        "a sentence cause the neuron to activate). Pay attention to things like the capitalization and punctuation of "
        "the activating words or concepts, if that seems relevant. Keep the explanation as short and simple as "
        "possible, limited to 20 words or less. Omit punctuation and formatting. You should avoid giving long lists "
        "of words."
    )
    if use_demos:
        system += (
            ' Some examples: "This neuron activates on the word \'knows\' in rhetorical questions", and "This neuron '
            'activates on verbs related to decision-making and preferences", and "This neuron activates on the '
            "substring 'Ent' at the start of words\", and \"This neuron activates on text about government economic "
            'policy".'
        )
    else:
        system += 'Your response should be in the form "This neuron activates on...".'
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"The activating documents are given below:\n\n{examples_str}"},
    ]


def scoring_prompt(explanation: str, examples: list[Example], n_correct: int, rng: random.Random) -> Messages:
    examples_str = "\n".join(f"{i + 1}. {ex.to_str(mark_toks=False)}" for i, ex in enumerate(examples))
    demo = ", ".join(
        str(i) for i in sorted(rng.sample(range(1, 1 + len(examples)), k=min(n_correct, len(examples))))
    )
    system = (
        "We're studying neurons in a neural network. Each neuron activates on some particular word/words/substring/"
        f"concept in a short document. You will be given a short explanation of what this neuron activates for, and "
        f"then be shown {len(examples)} example sequences in random order. You will have to return a comma-separated "
        "list of the examples where you think the neuron should activate at least once, on ANY of the words or "
        f'substrings in the document. For example, your response might look like "{demo}". Try not to be overly '
        "specific in your interpretation of the explanation. If you think there are no examples where the neuron "
        'will activate, you should just respond with "None". You should include nothing else in your response other '
        'than comma-separated numbers or the word "None" - this is important.'
    )
    user = f"Here is the explanation: this neuron fires on {explanation}.\n\nHere are the examples:\n\n{examples_str}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_explanation(text: str) -> str:
    return text.split("activates on")[-1].rstrip(".").strip()


def parse_predictions(text: str) -> list[int] | None:
    """Comma-separated 1-based indices (or "None"); None if the reply is not of that form."""
    parts = text.strip().rstrip(".").replace("and", ",").replace("None", "").split(",")
    items = [p.strip() for p in parts if p.strip()]
    if not all(p.isdigit() for p in items):
        return None
    return [int(p) for p in items]


def score_predictions(predictions: list[int], examples: list[Example]) -> float:
    """Fraction of windows whose predicted activity matches the real one."""
    predicted = [i in predictions for i in range(1, len(examples) + 1)]
    return sum(p == ex.is_active for p, ex in zip(predicted, examples)) / len(examples)


# --- the eval ------------------------------------------------------------------------------------


@dataclass
class AutoInterpEvalConfig:
    """SAEBench's AutoInterpEvalConfig fields (values for one run), plus the judge endpoint."""

    model_name: str = ""
    n_latents: int = 1000
    override_latents: list[int] | None = None
    dead_latent_threshold: float = 15
    random_seed: int = 42
    dataset_name: str = "monology/pile-uncopyrighted"
    llm_context_size: int = 128
    llm_batch_size: int = 32
    llm_dtype: str = "float32"
    buffer: int = 10
    no_overlap: bool = True
    act_threshold_frac: float = 0.01
    total_tokens: int = 2_000_000
    scoring: bool = True
    max_tokens_in_explanation: int = 30
    use_demos_in_explanation: bool = True
    n_top_ex_for_generation: int = 10
    n_iw_sampled_ex_for_generation: int = 5
    n_top_ex_for_scoring: int = 2
    n_random_ex_for_scoring: int = 10
    n_iw_sampled_ex_for_scoring: int = 2
    judge_model: str = DEFAULT_LLM_MODEL
    base_url: str | None = None
    api_key_env: str = API_KEY_ENV
    max_workers: int = 10
    request_timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES

    @property
    def n_top_ex(self) -> int:
        return self.n_top_ex_for_generation + self.n_top_ex_for_scoring

    @property
    def n_iw_sampled_ex(self) -> int:
        return self.n_iw_sampled_ex_for_generation + self.n_iw_sampled_ex_for_scoring

    @property
    def n_ex_for_scoring(self) -> int:
        return self.n_top_ex_for_scoring + self.n_random_ex_for_scoring + self.n_iw_sampled_ex_for_scoring

    @property
    def n_correct_for_scoring(self) -> int:
        return self.n_top_ex_for_scoring + self.n_iw_sampled_ex_for_scoring

    @property
    def max_tokens_in_prediction(self) -> int:
        return 2 * self.n_ex_for_scoring + 5


def judge_settings(config: AutoInterpEvalConfig) -> LLMSettings:
    """The judge's endpoint for `lorasae.core.llm.LLMClient`: the key from `$<api_key_env>`, the base URL from
    the config or `$OPENAI_BASE_URL`; no temperature is sent (as SAEBench)."""
    return LLMSettings.from_env(
        model=config.judge_model,
        base_url=config.base_url,
        api_key_env=config.api_key_env,
        timeout=config.request_timeout,
        max_retries=config.max_retries,
        temperature=None,
    )


@torch.no_grad()
def gather_examples(
    model: torch.nn.Module, tokenizer: Any, sae: Any, layer: int, tokens: Tensor, config: AutoInterpEvalConfig
) -> tuple[list[int], dict[int, list[Example]], dict[int, list[Example]], int]:
    """Pick live latents and build their generation / scoring windows. Returns
    (latents considered, generation examples, scoring examples, number of live latents)."""
    rng = random.Random(config.random_seed)
    generator = torch.Generator().manual_seed(config.random_seed)
    keep = keep_mask(tokens, tokenizer)
    resid = collect_residuals(model, tokens, layer, config.llm_batch_size, keep=keep)
    latents_all = sae_encode(sae, resid) * keep[..., None]
    fired = (latents_all != 0).sum(dim=(0, 1))
    if config.override_latents is not None:
        latents = list(config.override_latents)
        n_alive = len(latents)
    else:
        alive = torch.nonzero(fired > config.dead_latent_threshold).squeeze(1).tolist()
        n_alive = len(alive)
        latents = alive if len(alive) <= config.n_latents else rng.sample(alive, config.n_latents)
    acts = latents_all[..., latents]
    del latents_all
    n_seq, seq_len = tokens.shape
    b = config.buffer
    str_cache: dict[int, str] = {}

    def to_str_toks(ids: list[int]) -> list[str]:
        out = []
        for i in ids:
            if i not in str_cache:
                str_cache[i] = tokenizer.decode([i])
            out.append(str_cache[i])
        return out

    gen: dict[int, list[Example]] = {}
    score: dict[int, list[Example]] = {}
    for j, latent in enumerate(latents):
        a = acts[..., j]
        rand_idx = torch.stack(
            [
                torch.randint(0, n_seq, (config.n_random_ex_for_scoring,), generator=generator),
                torch.randint(b, seq_len - b, (config.n_random_ex_for_scoring,), generator=generator),
            ],
            dim=-1,
        )
        top_idx = get_k_largest_indices(a, config.n_top_ex, b, config.no_overlap)
        if len(top_idx) < config.n_top_ex:
            continue
        top_vals = index_with_buffer(a, top_idx, b)
        act_threshold = config.act_threshold_frac * float(top_vals.max())
        threshold = float(top_vals[:, b].min())
        thresholded = torch.where(a >= threshold, 0.0, a)
        inner = thresholded[:, b : seq_len - b]
        if float(inner.max()) < 1e-6 or int((inner != 0).sum()) < config.n_iw_sampled_ex:
            continue
        iw_idx = get_iw_sample_indices(thresholded, config.n_iw_sampled_ex, b, generator)

        def make(
            idx: Tensor, with_acts: bool, act_threshold: float = act_threshold, a: Tensor = a
        ) -> list[Example]:
            toks = index_with_buffer(tokens, idx, b).tolist()
            vals = index_with_buffer(a, idx, b).tolist() if with_acts else [[0.0] * (2 * b + 1)] * len(toks)
            return [Example(to_str_toks(t), v, act_threshold) for t, v in zip(toks, vals)]

        top_perm = torch.randperm(config.n_top_ex, generator=generator)
        iw_perm = torch.randperm(config.n_iw_sampled_ex, generator=generator)
        top_examples, iw_examples = make(top_idx, True), make(iw_idx, True)
        n_tg, n_ig = config.n_top_ex_for_generation, config.n_iw_sampled_ex_for_generation
        gen_examples = [top_examples[i] for i in top_perm[:n_tg]] + [iw_examples[i] for i in iw_perm[:n_ig]]
        gen[latent] = sorted(gen_examples, key=lambda ex: max(ex.acts), reverse=True)
        scoring = [top_examples[i] for i in top_perm[n_tg:]] + [iw_examples[i] for i in iw_perm[n_ig:]]
        scoring += make(rand_idx, False)
        rng.shuffle(scoring)
        score[latent] = scoring
    return latents, gen, score, n_alive


def _logs(messages: Messages, reply: str) -> str:
    rows = [[m["role"], m["content"]] for m in messages] + [["assistant", reply]]
    return tabulate(rows, tablefmt="simple_grid", maxcolwidths=[None, 120])


def run_autointerp(
    model: torch.nn.Module,
    tokenizer: Any,
    sae: Any,
    layer: int,
    tokens: Tensor,
    config: AutoInterpEvalConfig,
    sae_id: str,
    release_id: str | None = None,
    chat: Callable[[Messages, int], str] | None = None,
) -> dict[str, Any] | None:
    """Run the eval on `tokens` [N, llm_context_size]. Returns SAEBench's output object, or None (after
    printing why) when no API key is set and no `chat` function is given."""
    if chat is None:
        settings = judge_settings(config)
        if not settings.available:
            print(
                f"autointerp: skipped — no API key in ${config.api_key_env}. Set it (or put it in .env) to run the "
                f"judge {config.judge_model!r}" + (f" at {config.base_url}" if config.base_url else "") + "."
            )
            return None
        chat = LLMClient(settings).complete
    torch.manual_seed(config.random_seed)
    latents, gen, score, n_alive = gather_examples(model, tokenizer, sae, layer, tokens, config)
    rng = random.Random(config.random_seed + 1)
    scoring_seeds = {latent: rng.random() for latent in gen}

    def one(latent: int) -> dict[str, Any] | None:
        gen_messages = generation_prompt(gen[latent], config.use_demos_in_explanation)
        reply = chat(gen_messages, config.max_tokens_in_explanation)
        explanation = parse_explanation(reply)
        result: dict[str, Any] = {
            "latent": latent,
            "explanation": explanation,
            "logs": _logs(gen_messages, reply),
        }
        if config.scoring:
            examples = score[latent]
            messages = scoring_prompt(
                explanation, examples, config.n_correct_for_scoring, random.Random(scoring_seeds[latent])
            )
            pred_reply = chat(messages, config.max_tokens_in_prediction)
            predictions = parse_predictions(pred_reply)
            if predictions is None:
                return None
            result |= {
                "predictions": predictions,
                "correct seqs": [i for i, ex in enumerate(examples, start=1) if ex.is_active],
                "score": score_predictions(predictions, examples),
                "logs": result["logs"] + "\n" + _logs(messages, pred_reply),
            }
        return result

    with ThreadPoolExecutor(max_workers=max(1, config.max_workers)) as pool:
        results = [r for r in pool.map(one, sorted(gen)) if r is not None]
    scores = torch.tensor([r["score"] for r in results if "score" in r], dtype=torch.float64)
    metrics = {
        "autointerp": {
            "autointerp_score": float(scores.mean()) if len(scores) else float("nan"),
            "autointerp_std_dev": float(scores.std()) if len(scores) > 1 else 0.0,
        }
    }
    unstructured = {
        "results": {str(r["latent"]): r for r in results},
        "num_latents_sampled": len(latents),
        "num_latents_with_examples": len(gen),
        "num_latents_scored": len(scores),
        "num_alive_latents": n_alive,
        "d_sae": d_sae_of(sae),
    }
    cfg = asdict(config)
    cfg["api_key_env"] = config.api_key_env  # the name of the variable, never its value
    return eval_output(EVAL_TYPE_AUTOINTERP, cfg, metrics, [], sae, sae_id, release_id, unstructured)
