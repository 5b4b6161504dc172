"""The demo's SAE training budget, defined once: `make demo` trains every SAE of the built-in model on
`DEMO_SAE_TOKENS` tokens, and the scripts that train the demo's SAEs when missing (the dictionary
comparison, Dark Matter, the scale study, the benchmarks) default to the same budget, so that after the
demo README's commands find the SAEs it trained instead of training others."""

from __future__ import annotations

DEMO_SAE_TOKENS = 200_000
"""Training tokens of each demo SAE (195 steps of 1024 tokens on the built-in model; the paper's Gemma
SAEs: 2B, `lorasae.model.defaults.PAPER_SAE_TOKENS`)."""
