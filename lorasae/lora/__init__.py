"""LoRA adaptation of a frozen model to frozen SAEs (SPEC §3.2): adapters, the chunked KL objective, the
training loop and its outputs. `train_lora.py` is the command-line front end; evals import
`lorasae.lora.adapters`."""
