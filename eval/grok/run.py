"""The grokking study end to end (seed train-SAE): a small transformer trained on modular arithmetic until
it groks, SAEs before and after generalization, a crosscoder across both checkpoints, clamping latents
while training continues, figures.

    python eval/grok/run.py                                  # modular addition, p = 97 (`make grok`)
    python eval/grok/run.py --task division --prime 59 --train_frac 0.5

Writes saved_models/grok/<run>/ (the model and its checkpoints), the SAEs and the crosscoder that
train_sae.py trains from configs/grok-*.json (saved_saes/grok-<run>-<step_N|final>/), data/grok/<run>/study.json,
plots/grok_<run>_*.
The numbers are the same on every x86 CPU: torch's kernels and MKL's code path are pinned before torch
loads (`lorasae.core.cpu_numerics`; `LORASAE_CPU_NUMERICS=native` keeps the CPU's own, faster but machine-bound).
`--help` lists every flag.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lorasae.core import cpu_numerics  # noqa: E402

if "torch" not in sys.modules:  # imported into a process that already loaded torch (tests): too late to
    cpu_numerics.pin()  # pin, and the study records and prints that its float path is not the pinned one

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.errors import main_guard  # noqa: E402
from lorasae.grok.study import GrokStudyConfig, run_study  # noqa: E402


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    run_study(parse(GrokStudyConfig, argv))


if __name__ == "__main__":
    sys.exit(cli())
