"""Dark Matter of SAEs (Engels et al., TMLR 2025; SPEC §7): how much of an SAE's error is linearly
predictable from the activation, how that splits across width, what the encoder gets wrong, and what each
part does downstream.

API (see `eval/dark_matter/tutorial.py`):
- `get_sae_info(model, sae_source, num_tokens, ...) -> SAEInfo` (cached, safetensors, sparse latents);
  `build_sae_info(model, sae, chunks, layer, special_ids)` for already loaded objects; `SAEInfo.load/save`.
- `analyze_linear(info) -> (LinearReport, LinearMap)`: W*, vector and norm R² (with/without bias),
  baselines, linear and nonlinear FVU; `fit_linear`, `r2`, `split_error`.
- `fit_power_law(widths, values) -> PowerLaw` (c + a·W^m).
- `gradient_pursuit(x, W_dec, l0, b_dec)`, `pursuit_reconstruction(sae, x, l0)`.
- `component_ce(model, sae, W*, chunks, layer)`: CE of x̂, x̂ + linear, x̂ + nonlinear error (the
  original's first-200-positions-clean protocol where the context allows it: `downstream_protocol`).
- `analysis_region(uses, ctx_len, count, bos)`: the stream chunks after every token the SAEs and the
  adapter read (`sae_stream_use`, `adapter_stream_use` from their records).
- `train_error_saes(model, map_file, info, W*, ...)`: SAEs on the linear / nonlinear error through
  `train_sae` (`--hidden_modification`, W*, b from `write_linear_map`); `synthetic.validate()`.
- `run_dark_matter(model, width_sources, k_sources, lora_source, adapter)`: all of it, numbers and figures.
"""

from lorasae.darkmatter.downstream import component_ce, downstream_protocol
from lorasae.darkmatter.info import SAEInfo, build_sae_info
from lorasae.darkmatter.linear import LinearMap, analyze_linear, fit_linear, r2, split_error
from lorasae.darkmatter.load import get_sae_info
from lorasae.darkmatter.pipeline import DarkMatterSettings, run_dark_matter
from lorasae.darkmatter.powerlaw import PowerLaw, fit_power_law
from lorasae.darkmatter.pursuit import gradient_pursuit, pursuit_reconstruction
from lorasae.darkmatter.tokens import adapter_stream_use, analysis_region, sae_stream_use

__all__ = [
    "DarkMatterSettings",
    "LinearMap",
    "PowerLaw",
    "SAEInfo",
    "adapter_stream_use",
    "analysis_region",
    "analyze_linear",
    "build_sae_info",
    "component_ce",
    "downstream_protocol",
    "fit_linear",
    "fit_power_law",
    "get_sae_info",
    "gradient_pursuit",
    "pursuit_reconstruction",
    "r2",
    "run_dark_matter",
    "sae_stream_use",
    "split_error",
]
