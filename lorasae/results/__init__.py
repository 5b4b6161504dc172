"""Read the training and evaluation output files (SPEC §3.4) into tidy Python structures.

Producers (`train_sae.py`, `train_lora.py`, the steering eval) write JSON curves under
`data/TopK/{val_loss,time,CE_increase}/<model>/...` and one row per LoRA run to `data/results.csv`;
this package is the only place that knows those layouts on the reading side. `load_sae_curve` gives a
`Curve` (cumulative minutes, spliced CE; point i at training progress i/(len-1)), `load_lora_runs`
gives one `LoraRun` per `peft_<a>-<b>_rank_<r>_..._<N>k.json` triple with the SAE tag, checkpoint
percentage, layers, rank and example count parsed from the names, `load_results_csv` gives a pandas
DataFrame with typed columns plus parsed layer columns, and `load_timing_data` gathers everything the
timing plot and the e2e speed-up need. Every function takes the output root folder (default
`$LORASAE_ROOT`, else the repository root) and raises `MissingResultsError` (a `FileNotFoundError`)
naming the missing path and the command that produces it.

Modules: `files.py` (the output root, `MissingResultsError`), `curves.py` (`Curve`, SAE curves), `names.py`
(SAE tags, LoRA file names, layer specs), `lora_runs.py`, `table.py` (results.csv), `timing.py` (the
timing plot's and the speed-up's data), `steering.py` (steering Δs), `sweep.py` (sweep.py's manifest).
Import from `lorasae.results`; the names below are its public API.
"""

from lorasae.core.paths import sanitize
from lorasae.core.results_columns import RESULTS_COLUMNS
from lorasae.results.curves import SAE_KINDS, Curve, load_sae_curve
from lorasae.results.files import MissingResultsError, default_root, resolve_root, topk_dir
from lorasae.results.lora_runs import LoraRun, list_models, load_lora_runs
from lorasae.results.names import (
    LoraFileName,
    SaeTag,
    expand_width,
    parse_layers,
    parse_lora_filename,
    parse_sae_tag,
)
from lorasae.results.steering import (
    find_steering_results,
    load_steering_deltas,
    pick_steering_result,
    steering_label,
)
from lorasae.results.sweep import find_sweep_manifest, load_sweep_manifest, sweep_manifests
from lorasae.results.table import REGISTRY_SIZES_B, load_results_csv, model_size_billions, select_model
from lorasae.results.timing import TimingData, load_base_ce, load_timing_data, select_checkpoint_runs

__all__ = [
    "Curve",
    "LoraFileName",
    "LoraRun",
    "MissingResultsError",
    "REGISTRY_SIZES_B",
    "RESULTS_COLUMNS",
    "SAE_KINDS",
    "SaeTag",
    "TimingData",
    "default_root",
    "expand_width",
    "find_steering_results",
    "pick_steering_result",
    "steering_label",
    "list_models",
    "load_base_ce",
    "load_lora_runs",
    "load_results_csv",
    "load_sae_curve",
    "load_steering_deltas",
    "find_sweep_manifest",
    "load_sweep_manifest",
    "sweep_manifests",
    "load_timing_data",
    "model_size_billions",
    "parse_layers",
    "parse_lora_filename",
    "parse_sae_tag",
    "resolve_root",
    "sanitize",
    "select_checkpoint_runs",
    "select_model",
    "topk_dir",
]
