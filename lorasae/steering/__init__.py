"""Steering evaluation (SPEC §4.2): does a LoRA-adapted model steer along an SAE latent better than the
base model? Positive examples (LLM-generated or mined from a corpus), negative sets, the multiplicative
(or additive) edit at the SAE's layer, correctly aligned log-likelihoods, min-max normalised Δs with
t-intervals, automatic alpha tuning, histograms."""

from lorasae.steering.intervention import steer, steering_fn, unit_direction
from lorasae.steering.loglik import mean_logliks, text_logliks, token_logprobs
from lorasae.steering.stats import Interval, lora_minus_base, minmax_normalise, normalised_delta, t_interval

__all__ = [
    "Interval",
    "lora_minus_base",
    "mean_logliks",
    "minmax_normalise",
    "normalised_delta",
    "steer",
    "steering_fn",
    "t_interval",
    "text_logliks",
    "token_logprobs",
    "unit_direction",
]
