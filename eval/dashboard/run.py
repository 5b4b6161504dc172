"""Static HTML dashboards of SAE latents, before and after the LoRA adapter (open index.html from disk).

    python eval/dashboard/run.py --model_type tiny --device cpu                   (after `make demo`)
    python eval/dashboard/run.py --model_type tiny --latents 3,17,changed:10 --export neuronpedia
    python eval/dashboard/run.py --model_type gemma --device 0 --rank 64 --num_tokens 200k

Per latent and model (base, and the LoRA model beside it): top-activating contexts with each token shaded
by the latent's activation (at most --contexts per latent, default 20, cap 100), the histogram of its
activations, the logits its decoder direction pushes up and down; with an adapter, what changed (firing
frequency, mean activation, overlap of the top contexts). Tokens: the trainers' validation chunks.
Writes eval/dashboard/<model>/<sae tag>/<adapter label or base>[__<variant>]/{index.html, latent_<i>.html,
data.json, run.json} (and neuronpedia/{base,lora}/batch-<i>.json with --export neuronpedia); <variant> names
the settings off the defaults (e.g. other --latents), so such pages never replace the default ones.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.errors import main_guard  # noqa: E402
from lorasae.dashboard.run import DashboardArgs, run_dashboard  # noqa: E402


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    run_dashboard(parse(DashboardArgs, argv))


if __name__ == "__main__":
    sys.exit(cli())
