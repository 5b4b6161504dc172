"""The grokking study end to end on a small prime: every output is written and holds the measured numbers."""

from __future__ import annotations

import json
from pathlib import Path

from grok_helpers import small_grok_config

from lorasae.core import grok_paths, paths
from lorasae.core.fingerprint import file_digest
from lorasae.core.paths import portable
from lorasae.core.records import read_record
from lorasae.grok.study import REPO, GrokStudyConfig, run_study
from lorasae.grok_world.train import checkpoint_steps
from lorasae.model.load import model_key
from lorasae.sae import TopKSAE
from lorasae.sae.crosscoder import Crosscoder

SMALL = {"num_train_tokens": 4000, "num_val_tokens": 64, "batch_size": 16, "expansion_factor": 2, "k": 3}
SMALL |= {"eval_every_pct": 10}  # 11 curve points, not 101


def small_configs(folder: Path) -> dict[str, str]:
    """The study's config files (configs/grok-*.json) with the sizes of a p = 11 run."""
    out = {}
    for which in ("pre", "post", "crosscoder"):
        cfg = json.loads((REPO / "configs" / f"grok-{which}.json").read_text()) | SMALL | {"lr": 3e-3}
        path = folder / f"grok-{which}.json"
        path.write_text(json.dumps(cfg))
        out[f"{which}_sae_config" if which != "crosscoder" else "crosscoder_config"] = str(path)
    return out


def test_study_on_a_small_prime_writes_saes_crosscoder_clamp_results_and_figures(out_root):
    train = small_grok_config()
    cfg = GrokStudyConfig(
        train=train,
        **small_configs(out_root),
        pre_train_acc=0.9,
        n_clamp=3,
        clamp_seeds=2,
        clamp_steps=20,
        embedding_points=100,
    )
    study = run_study(cfg)
    run = train.run_name
    saved = json.loads((grok_paths.grok_data_dir(run) / "study.json").read_text())
    assert saved["clamp"]["random_seeds"] == 2 and len(saved["clamp"]["test_acc_random"]) == 2
    assert saved["clamp"]["to_step"] == saved["clamp"]["from_step"] + 20
    assert len(saved["clamp"]["final_model_test_acc_clamped"]["random"]) == 2
    assert [r["condition"] for r in saved["clamp_runs"]] == ["targeted", "random", "random"]
    assert {row["sae"] for row in saved["saes"]} == {"pre", "post"}
    assert all(0 <= row["fvu"] < 1.5 and row["l0"] <= 3 for row in saved["saes"])
    assert saved["crosscoder"]["l0"] <= 3
    assert study["train"]["pre_train_acc"] >= 0.9
    # the SAEs are train_sae.py's, under the checkpoints' names, and the study read those folders
    pre_key = model_key(str(grok_paths.grok_checkpoint_dir(run, study["train"]["pre_step"])))
    final_key = model_key(str(grok_paths.grok_model_dir(run)))
    post_folder = Path(saved["sae_folders"]["post"])  # the configs' settings off the defaults named
    assert post_folder.parent.parent == out_root / "saved_saes" / final_key / "normal"
    assert post_folder.parent.name.startswith("expansion_2_L0_3__") and post_folder.name == "model.layers.0"
    assert TopKSAE.load(post_folder).cfg.d_sae == 64
    assert Crosscoder.load(saved["sae_folders"]["crosscoder"]).cfg.sources == [pre_key, final_key]
    assert all(0 <= row["val_fvu"] < 1.5 for row in saved["saes"])
    names = {p.name for p in paths.plots_dir().glob("*.png")}
    for what in ("accuracy", "crosscoder_norms", "clamp", "latent_grid", "attribution", "latents_t-sne"):
        assert f"grok_{run}_{what}.png" in names
    # each figure's record names the run's files its numbers come from, with their digests
    data, pre = grok_paths.grok_data_dir(run), grok_paths.grok_checkpoint_dir(run, study["train"]["pre_step"])
    states = [grok_paths.grok_checkpoint_dir(run, s) / "state.json" for s in checkpoint_steps(run)]
    states = states[: states.index(pre / "state.json") + 1]  # read up to the pre-generalization checkpoint
    accuracy = read_record(paths.plots_dir() / f"grok_{run}_accuracy.png").get("inputs")
    assert accuracy == [
        {"path": portable(f), "digest": file_digest(f)}
        for f in sorted([data / "curves.json", data / "train_summary.json", *states], key=portable)
    ]
    grid = {i["path"] for i in read_record(paths.plots_dir() / f"grok_{run}_latent_grid.png").get("inputs")}
    models = [pre, grok_paths.grok_model_dir(run)]
    loaded = [f for folder in models for f in (*folder.glob("*.safetensors"), folder / "config.json")]
    loaded += [*post_folder.glob("*.safetensors"), post_folder / "cfg.json"]  # the post SAE's
    assert len(loaded) == 6 and grid == {portable(f) for f in [*states, *loaded]}


def test_grok_notebook_is_valid_and_committed_without_outputs():
    from required_libs import require

    nbformat = require("nbformat")
    nb = nbformat.read(Path(__file__).resolve().parent.parent / "eval" / "grok" / "grok.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert any("run_study" in cell.source for cell in code)


def _study_command(root: Path, native: dict[str, str]) -> dict:
    """`python eval/grok/run.py` at test size in the fresh root `root`, on a machine whose own float path
    is `native` (what ATEN_CPU_CAPABILITY / MKL_CBWR would otherwise be); its study.json numbers."""
    import os
    import subprocess
    import sys

    train = small_grok_config(max_steps=40)
    root.mkdir()
    configs = small_configs(root)
    argv = [sys.executable, str(REPO / "eval" / "grok" / "run.py"), "--prime", "11", "--train_frac", "0.5",
            "--d_model", "32", "--d_ff", "64", "--n_heads", "2", "--lr", "0.003", "--max_steps", "40",
            "--eval_every", "10", "--checkpoint_every", "20", "--pre_train_acc", "0.5", "--n_clamp", "3",
            "--clamp_seeds", "1", "--clamp_steps", "10", "--embedding_points", "60",
            *[f"--{key}={value}" for key, value in configs.items()]]  # fmt: skip
    env = {**os.environ, "LORASAE_ROOT": str(root), "HF_HUB_OFFLINE": "1", **native}
    env.pop("LORASAE_CPU_NUMERICS", None)
    subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    study = json.loads((root / "data" / "grok" / train.run_name / "study.json").read_text())
    assert study["numerics"]["cpu_capability"] == "AVX2" and study["numerics"]["mkl_cbwr"] == "COMPATIBLE"
    return {key: study[key] for key in ("train", "saes", "crosscoder", "differing_latents", "clamp")}


def test_make_grok_gives_the_same_numbers_in_fresh_roots_whatever_the_cpus_own_float_path(tmp_path):
    """The README's `make grok` numbers did not reproduce on another machine: an AVX2-only CPU (or MKL's
    path on another vendor) changes the float order, and the study turns that into other latents. The
    command pins one path, so two fresh roots on "two machines" give identical numbers."""
    one = _study_command(tmp_path / "one", {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX512"})
    two = _study_command(tmp_path / "two", {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AVX2"})
    for record in (one, two):
        record["train"].pop("seconds")
    assert one == two


def test_pin_sets_one_float_path_unless_the_user_opts_out():
    from lorasae.core import cpu_numerics

    env = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX512"}
    assert cpu_numerics.pin(env) == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"} == env
    native = {"LORASAE_CPU_NUMERICS": "native", "ATEN_CPU_CAPABILITY": "avx512"}
    assert cpu_numerics.pin(native) == {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": ""}
    assert native == {"LORASAE_CPU_NUMERICS": "native", "ATEN_CPU_CAPABILITY": "avx512"}
    assert cpu_numerics.is_pinned({"cpu_capability": "AVX2", "mkl_cbwr": "COMPATIBLE"})
    assert not cpu_numerics.is_pinned({"cpu_capability": "AVX512", "mkl_cbwr": ""})
