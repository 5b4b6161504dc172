"""SAEBench-style evaluation of one SAE on the base model or on the LoRA-merged model (SPEC §4.1).

    python eval/SAE-Bench/run_eval.py --device 0 --model_type peft
    python eval/SAE-Bench/run_eval.py --device 0 --model_type base          (also --MODEL_TYPE base)
    python eval/SAE-Bench/run_eval.py --device cpu --model tiny --model_type base
    python eval/SAE-Bench/run_eval.py --device cpu --model tiny --model_type peft --evals core,sparse_probing

`--model_type peft` merges the adapter in memory, or loads get_peft_dict.py's merged file when its run record
names that adapter (path and weights) and model (`lorasae/saebench/peft_dict.py`); the merge dtype is part of
the result's identity. `--evals all` (the default) runs SAEBench's eight: core, sparse_probing, scr, tpp, absorption, autointerp,
ravel, unlearning. Writes SAEBench's JSON schema per eval to eval/SAE-Bench/results/<model>_<base|peft>/
<eval>.json, prints the base-vs-peft table and, once both exist, draws plots/saebench_<model>__<peft slot>.png (named after the SAE, adapter and settings it draws;
`make demo` also draws its own under the plain plots/saebench_<model>.png).
Autointerp needs an OpenAI-compatible judge (--judge_model, --judge_base_url, key in $OPENAI_API_KEY);
without a key it is skipped with a message. RAVEL and unlearning use the built-in world's facts offline;
with hub data RAVEL reads SAEBench's prompt files (adamkarvonen/ravel_prompts, cached under
eval/SAE-Bench/artifacts/ravel/), and unlearning asks WMDP-bio / MMLU and needs --forget_corpus (WMDP's
gated bio forget corpus; SAEBench runs it on an instruct model, e.g. --model google/gemma-2-2b-it).

Where this differs from SAEBench 0.6.0 on purpose: core's explained variance is 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²
(variance around the mean of x); SAEBench 0.6.0 subtracts the square of the mean of x² (`(x).pow(2).mean`
where the mean of x belongs), which is not a variance. SCR/TPP pool ablated residuals as SAEBench does by
default (`--scr_ablation_pooling unmasked` leaves padding and BOS out).
"""

import sys

from lorasae.core.cli import parse
from lorasae.core.errors import main_guard
from lorasae.saebench.args import SaeBenchArgs
from lorasae.saebench.run import run


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    run(parse(SaeBenchArgs, argv))


if __name__ == "__main__":
    sys.exit(cli())
