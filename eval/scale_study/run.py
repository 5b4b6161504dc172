"""The scale study (README "The scale study"): gap closed, benchmark accuracy with and without the SAE, and
the steering effect against the LoRA rank / d_model, the training sequences and the model size on the
built-in models (tiny-s, tiny), and the e2e/TopK per-token cost against the layers after vs before the SAE.
Resumable: finished points are reused. Outputs: data/scale_study/ (points, table) and plots/scale_study/.

python eval/scale_study/run.py                 # the study (CPU, built-in models)
python eval/scale_study/run.py --seeds 0 --examples 40 160 640   # a smaller one
python eval/scale_study/run.py --quick         # test-sized
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lorasae.core.cli import parse  # noqa: E402
from lorasae.core.errors import main_guard  # noqa: E402
from lorasae.scale.config import ScaleStudyConfig  # noqa: E402


@main_guard
def cli(argv: list[str]) -> None:
    from lorasae.scale.study import run_study

    run_study(parse(ScaleStudyConfig, argv))


if __name__ == "__main__":
    sys.exit(cli())
