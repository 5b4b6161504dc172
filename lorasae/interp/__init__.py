"""The interpretability analysis of the original repository's `interp_analysis/` (issue 14 item 6):
`activations` (hidden states after each layer, clean vs SAE-spliced; L2 and cosine per sequence),
`token_loss` (per-token L_SAE − L_LoRA+SAE, log-binned histogram), `stats` (bootstrap intervals over
sequences), `pipeline` (the three passes and the JSON record), `plots` (the two figures), `run`
(`eval/interp_analysis/run.py` and the demo stage)."""
