"""SAEBench-style evaluation of one SAE on the base model or on the LoRA-merged model (SPEC §4.1).

    python eval/SAE-Bench/run_eval.py --device 0 --model_type peft
    python eval/SAE-Bench/run_eval.py --device 0 --model_type base          (also --MODEL_TYPE base)
    python eval/SAE-Bench/run_eval.py --device cpu --model tiny --model_type base
    python eval/SAE-Bench/run_eval.py --device cpu --model tiny --model_type peft --evals core,sparse_probing

Writes SAEBench's JSON schema per eval to eval/SAE-Bench/results/<model>_<base|peft>/<eval>.json, prints
the base-vs-peft table and, once both exist, draws plots/saebench_<model>.png. Autointerp needs an
OpenAI-compatible judge (--judge_model, --judge_base_url, key in $OPENAI_API_KEY); without a key it is
skipped with a message.
"""

import sys

from lorasae.cli import parse
from lorasae.saebench.args import SaeBenchArgs
from lorasae.saebench.run import run

if __name__ == "__main__":
    run(parse(SaeBenchArgs, sys.argv[1:]))
