"""The paper's scaling study as one command (`sweep.py`): LoRA runs over a grid of SAEs (L0, width, layer,
model size, rank, one layer at a time), from Gemma Scope or from this project's own SAEs."""
