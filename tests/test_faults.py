"""Issue 20's faults, each reproduced and checked against the mechanism that fixes it: the error
boundary (exit codes, --debug, Ctrl-C = 130 with a resumable state), completion records (a killed LoRA
run is redone, not skipped), fingerprints (train_sae.py refuses to replace a different SAE), checks
before work (unwritable folders), and atomic writes that clean stale temporaries and honour the umask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_bad_input import SAE_SMALL, script

from lorasae.core.atomic import atomic_dir, atomic_write_json, clean_stale_temps
from lorasae.core.cli import parse
from lorasae.core.errors import describe, run_guarded
from lorasae.core.paths import sae_dir
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.run import plan_runs
from lorasae.sae import SaeConfig, TopKSAE
from lorasae.train.existing import recorded_provenance
from lorasae.train.sae_trainer import SaeTrainer
from lorasae.train.state import load_state

REPO = Path(__file__).resolve().parent.parent
WORDS = "the a cat dog sat on mat ran far and then slept under big red tree house".split()

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def world(small_world, out_root) -> Path:
    """out_root with the small world's model linked as `model` and a small text file."""
    import random

    (out_root / "model").symlink_to(Path(small_world))
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(600)]
    (out_root / "text.txt").write_text("\n\n".join(docs))
    return out_root


def sae_argv(root: Path, *extra: str) -> list[str]:
    base = ["--device", "cpu", "--model", f"{root}/model", "--dataset", f"{root}/text.txt", "--layer", "0"]
    return base + SAE_SMALL + ["--eval_every_pct", "50", *extra]


# --- the boundary ------------------------------------------------------------------------------------
def test_boundary_maps_errors_to_one_message_and_exit_codes(capsys):
    def boom(exc):
        def entry(argv):
            raise exc

        return entry

    assert run_guarded(boom(ValueError("--x must be ≥ 1")), []) == 1
    assert capsys.readouterr().err.splitlines()[0] == "error: --x must be ≥ 1"
    assert run_guarded(boom(KeyboardInterrupt()), []) == 130
    assert "Interrupted" in capsys.readouterr().err
    assert run_guarded(boom(PermissionError(13, "Permission denied", "/x/y.json")), []) == 1
    assert "/x/y.json" in capsys.readouterr().err
    with pytest.raises(ValueError):  # --debug: the real exception, traceback and all
        run_guarded(boom(ValueError("x")), ["--debug"])


def test_network_errors_are_named_by_class_without_importing_their_packages():
    class APIConnectionError(Exception):  # what openai raises for an unreachable judge
        pass

    message = describe(APIConnectionError("Connection error.\n" + "frame\n" * 100))
    assert "could not reach a network service" in message and "frame" not in message


def test_scripts_exit_non_zero_without_traceback_and_show_it_with_debug(world):
    env = {**os.environ, "PYTHONPATH": str(REPO), "LORASAE_ROOT": str(world), "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, str(REPO / "train_sae.py"), *sae_argv(world, "--expansion_factor", "0")]
    plain = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert "--expansion_factor must be ≥ 1" in plain.stderr
    debug = subprocess.run([*argv, "--debug"], env=env, capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# --- Ctrl-C saves a resumable state -------------------------------------------------------------------
def test_ctrl_c_during_train_sae_saves_the_state_and_resume_finishes(world, monkeypatch, capsys):
    after_step = SaeTrainer._after_step

    def interrupt_at_5(self, logger):
        after_step(self, logger)
        if self.step == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(SaeTrainer, "_after_step", interrupt_at_5)
    train_sae = script("train_sae")
    assert train_sae.cli(sae_argv(world)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--resume" in err and "step 5/" in err
    state_file = next((world / "saved_saes").rglob("training_state.*.pt"))
    assert load_state(state_file).step == 5  # save_every_steps is 0: without the fix, nothing at step 5
    monkeypatch.setattr(SaeTrainer, "_after_step", after_step)
    assert train_sae.cli(sae_argv(world, "--resume")) == 0
    assert "Resuming from step 5" in capsys.readouterr().out


def test_a_real_sigint_to_train_sae_exits_130_with_the_resume_command(world):
    """The shell's Ctrl-C (SIGINT) mid-training, not a simulated one: exit 130, no traceback, a state
    saved at the step it stopped (save_every_steps is 0: before the fix, the last checkpoint)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LORASAE_ROOT": str(world), "HF_HUB_OFFLINE": "1"}
    argv = sae_argv(
        world, "--num_train_tokens", "200_000", "--eval_every_pct", "100", "--checkpoint_every_pct", "1"
    )
    # as from a terminal: SIGINT at its default even when the test runner runs in the background
    # (a shell starts background jobs with SIGINT ignored, and children inherit that)
    proc = subprocess.Popen(
        [sys.executable, "-u", str(REPO / "train_sae.py"), *argv],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        for line in proc.stdout:  # the 1 % checkpoint: training is under way
            if line.startswith("checkpoint"):
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    step = int(err.split("Interrupted at step ")[1].split("/")[0])
    state = load_state(next((world / "saved_saes").rglob("training_state.*.pt")))
    assert state.step == step > 0


# --- fingerprints: no silent overwrite ----------------------------------------------------------------
def _planned(root: Path, *extra: str) -> Path:
    """Where `train_sae.py <sae_argv(root, *extra)>` writes its final SAE (its settings in the name)."""
    from lorasae.train.config import TrainSaeConfig
    from lorasae.train.state import planned_dir

    return planned_dir(parse(TrainSaeConfig, sae_argv(root, *extra)))


def test_train_sae_writes_other_weights_beside_and_refuses_a_measurement_only_rerun(world, capsys):
    train_sae = script("train_sae")
    assert train_sae.cli(sae_argv(world)) == 0
    final = _planned(world)
    recorded = recorded_provenance(final)
    assert recorded["fingerprint"] and recorded["settings"]["num_train_tokens"] == 2000
    before = (final / "sae_weights.safetensors").read_bytes()
    # another budget: other weights, another folder (issue 25), the first untouched
    assert train_sae.cli(sae_argv(world, "--num_train_tokens", "1_000")) == 0
    other = _planned(world, "--num_train_tokens", "1_000")
    assert other != final and (other / "run.json").is_file()
    assert (final / "sae_weights.safetensors").read_bytes() == before
    # only what is measured differs: the same folder, refused in one line naming --overwrite
    capsys.readouterr()
    assert train_sae.cli(sae_argv(world, "--eval_every_pct", "25")) == 1
    err = capsys.readouterr().err
    assert "--eval_every_pct" in err and "--overwrite" in err and "not the weights" in err
    assert (final / "sae_weights.safetensors").read_bytes() == before
    record = (final / "run.json").read_bytes()
    assert train_sae.cli(sae_argv(world, "--eval_every_pct", "25", "--overwrite")) == 0
    assert (final / "run.json").read_bytes() != record  # redone with these settings


def test_unwritable_sae_folder_fails_before_training_and_writes_no_curves(world, capsys):
    blocked = _planned(world).parent
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")
    assert script("train_sae").cli(sae_argv(world)) == 1
    assert "cannot write" in capsys.readouterr().err
    assert not (world / "data" / "TopK").exists()  # no curves for an SAE that does not exist


# --- completion records -------------------------------------------------------------------------------
def _our_sae(root: Path) -> Path:
    torch.manual_seed(0)
    folder = sae_dir("model", "normal", 8, 1, 1)
    TopKSAE(SaeConfig(d_in=32, d_sae=256, k=1, hook_layer=1)).save(folder)
    return folder


def test_a_killed_lora_run_is_redone_and_only_a_completion_record_means_done(world, capsys):
    _our_sae(world)
    argv = [
        "--device",
        "cpu",
        "--model",
        f"{world}/model",
        "--dataset",
        f"{world}/text.txt",
        "--ctx_len",
        "16",
    ]
    argv += ["--num_val_tokens", "64", "--num_train_examples", "4", "--progress", "false", "--skip_existing"]
    cfg = parse(TrainLoraConfig, argv)
    (planned,) = plan_runs(cfg)
    # what a SIGKILL between train_lora.py's writes leaves: the CE_increase JSON, no row, no record
    atomic_write_json(planned.run_id.json_path("CE_increase"), {"initial": 1.0, "converged": 0.5})
    assert planned.status() == "incomplete" and not planned.done()
    assert script("train_lora").cli(argv) == 0
    out = capsys.readouterr().out
    assert "Redoing" in out and "without the run record" in out
    record = json.loads(planned.run_id.done_path().read_text())
    assert record["identity_digest"] == planned.fingerprint
    rows = (world / "data" / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and planned.fingerprint in rows[1]
    assert plan_runs(cfg)[0].done()
    assert script("train_lora").cli(argv) == 0  # done: skipped
    out = capsys.readouterr().out
    assert "Skipping" in out and "identical run" in out
    assert len((world / "data" / "results.csv").read_text().splitlines()) == 2
    # other inputs (a retrained SAE) under the same names: not done any more
    torch.manual_seed(1)
    TopKSAE(SaeConfig(d_in=32, d_sae=256, k=1, hook_layer=1)).save(sae_dir("model", "normal", 8, 1, 1))
    assert plan_runs(cfg)[0].status() == "different"


def test_train_lora_checks_the_output_folder_before_loading(world, capsys):
    _our_sae(world)
    (world / "data").write_text("a file where the results folder goes")
    argv = ["--device", "cpu", "--model", f"{world}/model", "--dataset", f"{world}/text.txt"]
    assert script("train_lora").cli(argv + ["--num_train_examples", "4"]) == 1
    err = capsys.readouterr().err
    assert "cannot write the LoRA outputs" in err and "Loading weights" not in err


# --- atomic writes ------------------------------------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_killed_writes_are_removed_on_the_next_write(tmp_path):
    from lorasae.core.atomic import HOST_TAG

    dead, old = f"{_dead_pid()}@{HOST_TAG}", time.time() - 3600
    stale_file = tmp_path / f".curve.json.{dead}.abcd1234.tmp"
    stale_file.write_text("half")
    stale_dir = tmp_path / f".model.layers.1.{dead}.efgh5678.tmp"
    stale_dir.mkdir()
    (stale_dir / "sae_weights.safetensors").write_bytes(b"0" * 1000)
    legacy = tmp_path / ".old.json.x1y2z3.tmp"  # an older version's name (no pid)
    legacy.write_text("half")
    for path in (stale_file, stale_dir, legacy):
        os.utime(path, (old, old))
    live = tmp_path / f".other.json.{os.getppid()}@{HOST_TAG}.ijkl9012.tmp"  # a live writer (another rank)
    remote = tmp_path / f".far.json.{_dead_pid()}@elsewhere.qrst7890.tmp"  # another host's, an hour old
    remote.write_text("in progress there")
    os.utime(remote, (old, old))
    live.write_text("in progress")
    os.utime(live, (old, old))
    fresh = tmp_path / f".new.json.{dead}.mnop3456.tmp"  # newer than this process: not ours to judge
    fresh.write_text("?")
    atomic_write_json(tmp_path / "curve.json", [1.0])
    assert not stale_file.exists() and not stale_dir.exists() and not legacy.exists()
    assert live.exists() and fresh.exists() and remote.exists()
    assert clean_stale_temps(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["curve.json"]


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_outputs_are_created_with_the_users_umask(tmp_path, umask, file_mode, dir_mode):
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {})
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "x.txt").write_text("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "folder").stat().st_mode & 0o777 == dir_mode


# --- tables show the settings that differ -------------------------------------------------------------
def test_results_table_adds_an_examples_column_when_runs_differ_in_it(out_root):
    from lorasae.core.atomic import append_csv_row
    from lorasae.core.results_columns import RESULTS_COLUMNS
    from lorasae.results.summary import results_table

    def row(examples: int, l_lora: float) -> dict:
        values = {"model": "tiny", "sae_tag": "expansion_8_L0_1", "sae_source": "s", "sae_layers": "1"}
        values |= {"lora_layers": "0-1", "rank": 16, "num_examples": examples, "L_base": 4.0, "L_SAE": 5.0}
        values |= {"L_LoRA": l_lora, "ce_gap": 1.0, "frac_gap_closed": 5.0 - l_lora, "timestamp": "t"}
        return {c: values.get(c, "") for c in RESULTS_COLUMNS}

    append_csv_row(out_root / "data" / "results.csv", row(160, 4.5))
    assert "examples" not in results_table("tiny")  # one run: nothing differs
    append_csv_row(out_root / "data" / "results.csv", row(50, 4.8))
    lines = results_table("tiny").splitlines()
    assert "examples" in lines[0]
    assert any(" 160 " in line for line in lines[2:]) and any(" 50 " in line for line in lines[2:])


# --- comparisons pair only matching results -----------------------------------------------------------
def _core(l_base: float, l_sae: float, fingerprint: str | None) -> dict:
    from lorasae.saebench.comparison import SAE_FINGERPRINT

    metrics = {"ce_loss_without_sae": l_base, "ce_loss_with_sae": l_sae}
    out = {"eval_result_metrics": {"model_performance_preservation": metrics}}
    return out | ({SAE_FINGERPRINT: fingerprint} if fingerprint else {})


def test_saebench_compares_base_and_peft_only_on_the_same_sae():
    from lorasae.saebench.comparison import comparison_table, gap_closed

    same = {"base": {"core": _core(3.0, 4.0, "aaa")}, "peft": {"core": _core(3.0, 3.5, "aaa")}}
    assert gap_closed(same)["fraction"] == pytest.approx(0.5)
    # the SAE at the path was retrained between the base and the peft run (the issue's -322 %)
    stale = {"base": {"core": _core(3.0, 3.1, "old")}, "peft": {"core": _core(3.0, 3.5, "new")}}
    assert gap_closed(stale) is None
    table = comparison_table(stale)
    assert "core: skipped" in table and "old vs new" in table and "CE gap closed" not in table
    legacy = {"base": {"core": _core(3.0, 4.0, None)}, "peft": {"core": _core(3.0, 3.5, None)}}
    assert gap_closed(legacy)["fraction"] == pytest.approx(0.5)  # older files: paired as before


def test_benchmark_table_leaves_out_a_run_with_another_limit_and_says_so(out_root):
    from lorasae.lmeval.comparison import comparison_table
    from lorasae.lmeval.layout import ALL_FOUR, results_path

    def record(limit, acc, sae_print=None):
        config = {"limit": limit, "num_fewshot": None, "max_length": None, "tasks": ["arc_easy"]}
        return {"results": {"arc_easy": {"acc,none": acc}}, "config": config | {"sae_fingerprint": sae_print}}

    base, base_sae, peft, peft_sae = ALL_FOUR
    for combo, rec in [
        (base, record(None, 0.61)), (base_sae, record(None, 0.52, "s1")),
        (peft, record(50, 0.99)), (peft_sae, record(None, 0.58, "s2")),
    ]:  # fmt: skip
        atomic_write_json(results_path("tiny", combo), rec)
    table = comparison_table("tiny")
    assert "0.61" in table and "0.52" in table
    assert "0.99" not in table and "skipped peft_no_sae" in table and "--limit 50 vs None" in table
    assert "0.58" not in table and "skipped peft_sae: evaluated with another SAE" in table


def test_output_swapped_out_by_a_killed_atomic_dir_is_put_back_not_deleted(tmp_path):
    """A kill between atomic_dir's two renames leaves the old output only inside its `.old` temp: the
    next write into the folder restores it instead of cleaning it away."""
    from lorasae.core.atomic import HOST_TAG

    dead, old = f"{_dead_pid()}@{HOST_TAG}", time.time() - 3600
    swapped = tmp_path / f".rank_16.{dead}.abcd1234.old"
    (swapped / "rank_16").mkdir(parents=True)
    (swapped / "rank_16" / "adapter_model.safetensors").write_bytes(b"weights")
    os.utime(swapped, (old, old))
    atomic_write_json(tmp_path / "other.json", [1])
    assert (tmp_path / "rank_16" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert not swapped.exists()


def test_failed_rename_in_atomic_dir_puts_the_old_output_back(tmp_path, monkeypatch):
    target = tmp_path / "model.layers.1"
    target.mkdir()
    (target / "cfg.json").write_text("old")
    real_replace, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new folder's rename fails
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr("lorasae.core.atomic.os.replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        with atomic_dir(target) as tmp:
            (tmp / "cfg.json").write_text("new")
    assert (target / "cfg.json").read_text() == "old"
