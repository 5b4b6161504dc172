"""The grokking study (`eval/grok/run.py`, `make grok`): SAEs and a crosscoder on grokking checkpoints,
the clamping experiments and figures. The world it studies (tasks, model, training) is `lorasae.grok_world`."""
