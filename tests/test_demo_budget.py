"""The demo's SAE budget (`lorasae.core.budget.DEMO_SAE_TOKENS`) is the default of every script that trains
the demo's SAEs when they are missing, so that README's commands after `make demo` find the demo's SAEs
(an SAE's folder and record carry its token count) instead of training others."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from lorasae.core.budget import DEMO_SAE_TOKENS
from lorasae.core.cli import parse

REPO = Path(__file__).resolve().parents[1]


def test_every_script_that_trains_the_demos_saes_defaults_to_the_demos_budget():
    from lorasae.darkmatter.cli import DarkMatterArgs
    from lorasae.darkmatter.plan import our_sae_sources
    from lorasae.demo.main import DemoConfig
    from lorasae.dictcompare.config import DictionariesConfig
    from lorasae.scale.config import ScaleStudyConfig

    sys.path.insert(0, str(REPO / "bench"))
    from reproducibility import ReproducibilityBench

    assert parse(DemoConfig, []).sae_tokens == DEMO_SAE_TOKENS
    assert parse(DarkMatterArgs, []).sae_tokens == DEMO_SAE_TOKENS
    assert parse(DictionariesConfig, []).sae_tokens == DEMO_SAE_TOKENS
    assert inspect.signature(our_sae_sources).parameters["sae_tokens"].default == DEMO_SAE_TOKENS
    assert ScaleStudyConfig.__dataclass_fields__["sae_tokens"].default == DEMO_SAE_TOKENS
    assert ReproducibilityBench().sae_tokens == DEMO_SAE_TOKENS
