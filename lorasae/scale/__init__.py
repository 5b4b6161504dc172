"""The scale study (issue 30): the paper's claims as functions of the LoRA rank / d_model, the LoRA training
sequences and the model size on the built-in models, and the e2e speed-up's per-token cost against the
FLOPs of the layers after vs before the SAE. `eval/scale_study/run.py` runs it; `--quick` is test-sized."""

from lorasae.scale.config import PAPER_RANK_RATIO, Point, ScaleStudyConfig, plan_points

__all__ = ["PAPER_RANK_RATIO", "Point", "ScaleStudyConfig", "plan_points"]
