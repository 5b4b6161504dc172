"""The demo's SAE training budget, defined once: `make demo` trains every SAE of the built-in model on
`DEMO_SAE_TOKENS` tokens, and the scripts that train the demo's SAEs when missing (the dictionary
comparison, Dark Matter, the scale study, the benchmarks) default to the same budget, so that after the
demo README's commands find the SAEs it trained instead of training others. It is also train_sae.py's
default budget on small models (`lorasae.model.defaults.default_num_train_tokens`), so these SAEs keep
the plain folder names (`expansion_8_L0_4`: no `__n-<tokens>` variant). This module imports nothing."""

from __future__ import annotations

DEMO_SAE_TOKENS = 200_000
"""Training tokens of each demo SAE (195 steps of 1024 tokens on the built-in model; the paper's Gemma
SAEs: 2B, `lorasae.model.defaults.PAPER_SAE_TOKENS`)."""

DEMO_CURVE_EVERY_PCT = 5.0
"""The validation curve of the demo's main TopK SAE and its e2e SAE: every 5 % of training (21 points;
train_sae.py's default is 1 %). Each point runs the model after the SAE on every validation token (about 0.4
CPU s on the built-in model): 101 points were 40 % of the e2e stage and most of the main SAE's. The dictionary
comparison's TopK row is this run (reused when it matches); the e2e speed-up interpolates the time a curve
reaches each target linearly between points. Validation never changes training."""
