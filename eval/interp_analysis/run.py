"""The interpretability analysis of the original repository (`interp_analysis/`) on our SAEs and adapters.

    python eval/interp_analysis/run.py --model_type tiny --device cpu         (offline, after `make demo`)
    python eval/interp_analysis/run.py --model_type gemma --device 0          (our SAE, else Gemma Scope L12)
    python eval/interp_analysis/run.py --model_type llama --device 0 --rank 64

Per layer from the SAE's on: the mean L2 distance and cosine similarity between the clean base model's
hidden states and the SAE-spliced states of the base model and of the LoRA-adapted model, LoRA − base
with percentile-bootstrap intervals over sequences; and per token, L_SAE − L_LoRA+SAE (log-binned
histogram). Writes data/interp/<model>/<sae_tag>/peft_<a>-<b>_rank_<r>.json and, named after it,
plots/<model>_interp_layers__<sae_tag>__<result>.png|pdf and plots/<model>_interp_token_loss__<...>.png|pdf.
An identical rerun is skipped (saying so; its tables and figures are shown from the result); --overwrite
redoes it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.errors import main_guard  # noqa: E402
from lorasae.interp.run import InterpArgs, main  # noqa: E402


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    main(parse(InterpArgs, argv))


if __name__ == "__main__":
    sys.exit(cli())
