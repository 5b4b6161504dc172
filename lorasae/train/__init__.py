"""SAE training (`train_sae.py`): config, schedule, optimiser, distributed helpers, state, logging, loop."""
