"""The bad-input matrix, part 2 (issue 25 item 7): damaged and hand-written files and bad flag values.
Every case names the file it is about (or the flag), says what to do with that kind of file (regenerate an
output; fix a config or a data file by hand at a line), prints one line without the usage block or a
traceback, exits non-zero and changes no existing output. Shares the harness of `test_bad_input.py`
(`fail`, the prepared root on the cached small world); the damaged files are added to that root once."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # works under any pytest import mode
from test_bad_input import (  # noqa: E402 (after the path)
    CASES as FIRST_CASES,
)
from test_bad_input import (  # noqa: E402
    LORA_SMALL,
    MORE_SCRIPTS,
    SAE_SMALL,
    SCRIPTS,
    TXT,
    W,
    _save_sae,
    fail,
    prepared,  # noqa: F401 (the fixture, module-scoped here)
)

from lorasae.core.errors import HINT  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

BAD_UTF8 = "caf\u00e9 ".encode("latin-1") + b"au lait\n"  # byte 3 is 0xe9: not UTF-8


def _adapter(model_dir: Path, folder: Path) -> Path:
    """A small PEFT adapter on the world model's attention of layer 1 (what the evals load)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj", "v_proj"], layers_to_transform=[1])
    get_peft_model(model, config).save_pretrained(str(folder))
    return folder


def _truncate(path: Path, keep: int = 200) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _model_copy(world: Path, folder: Path) -> Path:
    """The world model's folder with every file linked, `model.safetensors` and `config.json` copied
    (so that a case can damage them)."""
    folder.mkdir()
    for entry in world.iterdir():
        if entry.name in ("model.safetensors", "config.json"):
            shutil.copy(entry, folder / entry.name)
        else:
            (folder / entry.name).symlink_to(entry)
    return folder


@pytest.fixture(scope="module")
def prepared_files(prepared) -> Path:  # noqa: F811 (the imported fixture)
    """`prepared` plus damaged data, config, SAE, adapter and model files."""
    root = prepared
    world = (root / "model").resolve()
    # data files
    (root / "latin1.txt").write_bytes(b"plain words first\n\n" + BAD_UTF8)
    (root / "bad.jsonl").write_text('{"text": "one fine line"}\n{"text": "broken\n')
    (root / "nofield.jsonl").write_text('{"text": "one"}\n{"body": "two"}\n')
    (root / "latin1.jsonl").write_bytes(b'{"text": "one"}\n{"text": "' + BAD_UTF8.strip() + b'"}\n')
    # hand-written configs
    cfg = root / "configs"
    cfg.mkdir()
    (cfg / "k_banana.yaml").write_text("layer: 0\nk: banana\n")
    (cfg / "k_banana.json").write_text('{\n  "layer": 0,\n  "k": "banana"\n}\n')
    (cfg / "syntax.yaml").write_text("layer: 0\nk: [1, 2\nlr: 0.1\n")
    (cfg / "syntax.json").write_text('{\n  "layer": 0,\n  "k": 4,,\n}\n')
    (cfg / "unknown.yaml").write_text("layer: 0\nnot_a_setting: 3\n")
    (cfg / "list.yaml").write_text("- layer\n- 0\n")
    (cfg / "latin1.yaml").write_bytes(b"layer: 0\n# " + BAD_UTF8)
    (cfg / "rank_x.yaml").write_text("rank: x\n")
    (cfg / "empty.yaml").write_text("")
    (cfg / "dropout.yaml").write_text("rank: 2\nlora_dropout: 1.5\n")
    (cfg / "lora_syntax.json").write_text('{"rank": 4\n')
    (cfg / "evals_unknown.yaml").write_text("evals: core\nfast: true\n")
    (cfg / "alpha_bad.yaml").write_text("alpha: strong\n")
    (cfg / "interp_syntax.yaml").write_text("rank: {4\n")
    # SAEs
    saes = root / "saes"
    latin = _save_sae(saes / "latin1_cfg", 32, 64, 1)
    (latin / "cfg.json").write_bytes(b'{"d_in": 32, "note": "' + BAD_UTF8.strip() + b'"}')
    listed = _save_sae(saes / "list_cfg", 32, 64, 1)
    (listed / "cfg.json").write_text("[1, 2]")
    _truncate(_save_sae(saes / "empty_weights", 32, 64, 1) / "sae_weights.safetensors", 0)
    # adapters
    adapters = root / "adapters"
    good = _adapter(world, adapters / "good")
    _truncate(_adapter(world, adapters / "truncated") / "adapter_model.safetensors", 300)
    badcfg = adapters / "badcfg"
    shutil.copytree(good, badcfg)
    (badcfg / "adapter_config.json").write_text('{"r": 2, "lora_alpha": ')
    # models
    _truncate(_model_copy(world, root / "model_truncated") / "model.safetensors", 5000)
    (_model_copy(world, root / "model_badcfg") / "config.json").write_text('{"model_type": "llama",')
    return root


SETUP = {  # damage that only one case may see, keyed by the case's id
    "results-csv-damaged": lambda root: (root / "data" / "results.csv").write_text(
        "model,sae_tag,rank\ntiny,x,1\ntiny,y,2,extra,cells\n"
    ),
}


@pytest.fixture
def root(prepared_files, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the prepared root as LORASAE_ROOT (cases cannot disturb each other)."""
    out = tmp_path / "root"
    shutil.copytree(prepared_files, out, symlinks=True)
    monkeypatch.setenv("LORASAE_ROOT", str(out))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LORASAE_DEBUG", raising=False)
    return out


MULTI_LINE = {  # messages that list several things, one per line
    "interp-no-sae",  # the SAEs there are (the store)
    "config-value-checked-later",  # every invalid setting (train_lora)
}


def fail_one_line(name: str, argv: list[str], root: Path, capsys, many_lines: bool = False) -> str:
    """`fail` (non-zero, no traceback, nothing changed) and: one line of message (unless the message
    lists what there is), no usage block."""
    err = fail(name, argv, root, capsys)
    assert "usage:" not in err, err
    if many_lines:
        return err
    lines = [
        line
        for line in err.splitlines()
        if line.strip() and line.strip() != HINT and "it/s]" not in line and "s/it]" not in line
    ]  # less the hint and the libraries' progress bars
    assert len(lines) == 1, err
    assert "usage:" not in err, err
    return err


G = ["--sae", "{root}/saes/good"]
CFG = "{root}/configs/"
M_TRUNC = ["--device", "cpu", "--model", "{root}/model_truncated"]
M_BADCFG = ["--device", "cpu", "--model", "{root}/model_badcfg"]
BASE_CORE = ["--model_type", "base", "--evals", "core"]
PEFT_CORE = ["--model_type", "peft", "--evals", "core"]

# (id, script, argv, phrases the message must contain (case-insensitive), all of them)
CASES = [
    # --- a bad flag value: one line naming the flag, no usage block, for every script ------------
    ("flag-sae-k", "train_sae", ["--k", "banana"], ["--k", "banana"]),
    ("flag-sae-lr", "train_sae", ["--lr", "fast"], ["--lr", "fast"]),
    ("flag-sae-unknown", "train_sae", ["--kk", "3"], ["--kk", "unrecognized"]),
    ("flag-lora-rank", "train_lora", ["--rank", "x"], ["--rank", "'x'"]),
    ("flag-lora-lr", "train_lora", ["--lr", "abc"], ["--lr", "abc"]),
    ("flag-sweep-bool", "sweep", ["--dry_run", "perhaps"], ["--dry_run", "perhaps"]),
    ("flag-saebench-layer", "saebench", ["--layer", "twelve"], ["--layer", "twelve"]),
    ("flag-peft-dict-unknown", "peft_dict", ["--adaptor", "x"], ["--adaptor", "unrecognized"]),
    ("flag-steer-alpha", "steer", ["--alpha", "strong"], ["--alpha", "strong"]),
    ("flag-tune-layer", "tune", ["--layer", "one"], ["--layer", "one"]),
    ("flag-positives-layer", "positives", ["--layer", "one"], ["--layer", "one"]),
    ("flag-bench-limit", "bench", ["--limit", "many"], ["--limit", "many"]),
    ("flag-dm-tokens", "darkmatter", ["--num_tokens", "lots"], ["--num_tokens", "lots"]),
    ("flag-grok-layer", "grok", ["--layer", "x"], ["--layer", "'x'"]),
    ("flag-demo-rank", "demo", ["--rank", "x"], ["--rank", "'x'"]),
    ("flag-interp-rank", "interp", ["--rank", "x"], ["--rank", "'x'"]),
    ("flag-tutorial-seed", "tutorial", ["--seed", "x"], ["--seed", "'x'"]),
    # --- config files: the file, the line, the field; fix it by hand ------------------------------
    ("config-yaml-bad-value", "train_sae", ["--config_file", CFG + "k_banana.yaml"], ["k_banana.yaml", "line 2", "k:", "by hand"]),
    ("config-json-bad-value", "train_sae", ["--config_file", CFG + "k_banana.json"], ["k_banana.json", "line 3", "banana"]),
    ("config-yaml-syntax", "train_sae", ["--config_file", CFG + "syntax.yaml"], ["syntax.yaml", "line 3", "by hand"]),
    ("config-json-syntax", "train_sae", ["--config_file", CFG + "syntax.json"], ["syntax.json", "line 3", "by hand"]),
    ("config-unknown-key", "train_sae", ["--config_file", CFG + "unknown.yaml"], ["unknown.yaml", "line 2", "not_a_setting"]),
    ("config-not-mapping", "train_sae", ["--config_file", CFG + "list.yaml"], ["list.yaml", "mapping"]),
    ("config-not-utf8", "train_sae", ["--config_file", CFG + "latin1.yaml"], ["latin1.yaml", "byte offset 14"]),
    ("config-missing", "train_sae", ["--config_file", CFG + "nowhere.yaml"], ["nowhere.yaml", "does not exist"]),
    ("config-flag-wins", "train_sae", ["--config_file", CFG + "k_banana.yaml", "--lr", "x"], ["--lr"]),
    ("config-empty", "train_sae", ["--config_file", CFG + "empty.yaml"], ["empty.yaml", "is empty"]),
    ("config-value-checked-later", "train_lora", W + TXT + LORA_SMALL + G + ["--config_file", CFG + "dropout.yaml"], ["dropout", "dropout.yaml, line 2", "by hand"]),
    ("config-lora-bad-value", "train_lora", ["--config_file", CFG + "rank_x.yaml"], ["rank_x.yaml", "line 1", "rank"]),
    ("config-lora-syntax", "train_lora", ["--config_file", CFG + "lora_syntax.json"], ["lora_syntax.json", "line 2"]),
    ("config-saebench-unknown", "saebench", ["--config_file", CFG + "evals_unknown.yaml"], ["evals_unknown.yaml", "line 2", "fast"]),
    ("config-steer-bad-value", "steer", ["--config_file", CFG + "alpha_bad.yaml"], ["alpha_bad.yaml", "alpha", "strong"]),
    ("config-interp-syntax", "interp", ["--config_file", CFG + "interp_syntax.yaml"], ["interp_syntax.yaml", "line 2"]),
    # --- data files: the file and the line or byte offset -----------------------------------------
    ("data-sae-not-utf8", "train_sae", W + ["--dataset", "{root}/latin1.txt", "--layer", "0"] + SAE_SMALL, ["latin1.txt", "byte offset 22", "utf-8"]),
    ("data-sae-jsonl-line", "train_sae", W + ["--dataset", "{root}/bad.jsonl", "--layer", "0"] + SAE_SMALL, ["bad.jsonl", "line 2", "by hand"]),
    ("data-sae-jsonl-field", "train_sae", W + ["--dataset", "{root}/nofield.jsonl", "--layer", "0"] + SAE_SMALL, ["nofield.jsonl", "line 2", "--text_field"]),
    ("data-sae-jsonl-not-utf8", "train_sae", W + ["--dataset", "{root}/latin1.jsonl", "--layer", "0"] + SAE_SMALL, ["latin1.jsonl", "line 2", "byte offset 29"]),
    ("data-lora-not-utf8", "train_lora", W + ["--dataset", "{root}/latin1.txt"] + LORA_SMALL + G, ["latin1.txt", "byte offset 22"]),
    ("data-lora-jsonl-line", "train_lora", W + ["--dataset", "{root}/bad.jsonl"] + LORA_SMALL + G, ["bad.jsonl", "line 2"]),
    ("data-dm-not-utf8", "darkmatter", W + ["--dataset", "{root}/latin1.txt", "--num_tokens", "2000"] + G, ["latin1.txt", "byte offset 22"]),
    ("data-interp-jsonl-line", "interp", W + ["--dataset", "{root}/bad.jsonl", "--adapter", "{root}/adapters/good"] + G, ["bad.jsonl", "line 2"]),
    # --- SAE files: cfg.json, weights ---------------------------------------------------------------
    ("sae-cfg-corrupt-saebench", "saebench", W + BASE_CORE + ["--sae", "{root}/saes/badcfg"], ["badcfg/cfg.json", "rerun train_sae.py"]),
    ("sae-cfg-corrupt-steer", "steer", W + ["--sae", "{root}/saes/badcfg"], ["badcfg/cfg.json"]),
    ("sae-cfg-not-utf8", "train_lora", W + TXT + LORA_SMALL + ["--sae", "{root}/saes/latin1_cfg"], ["latin1_cfg/cfg.json"]),
    ("sae-cfg-list", "bench", W + ["--sae", "--sae_source", "{root}/saes/list_cfg"], ["list_cfg/cfg.json", "object"]),
    ("sae-weights-truncated-bench", "bench", W + ["--sae", "--sae_source", "{root}/saes/truncated"], ["truncated/sae_weights.safetensors", "rerun train_sae.py"]),
    ("sae-weights-truncated-steer", "steer", W + ["--sae", "{root}/saes/truncated"], ["truncated/sae_weights.safetensors"]),
    ("sae-weights-truncated-dm", "darkmatter", W + TXT + ["--num_tokens", "2000", "--sae", "{root}/saes/truncated"], ["sae_weights.safetensors"]),
    ("sae-weights-empty-tune", "tune", W + ["--sae", "{root}/saes/empty_weights"], ["empty_weights/sae_weights.safetensors"]),
    ("sae-weights-truncated-interp", "interp", W + ["--sae", "{root}/saes/truncated", "--adapter", "{root}/adapters/good"], ["truncated/sae_weights.safetensors"]),
    ("sae-init-truncated", "train_sae", W + TXT + ["--layer", "0", "--init_sae", "{root}/saes/truncated"] + SAE_SMALL, ["truncated/sae_weights.safetensors"]),
    # --- adapters: weights and adapter_config.json --------------------------------------------------
    ("adapter-truncated-saebench", "saebench", W + PEFT_CORE + G + ["--adapter", "{root}/adapters/truncated"], ["truncated/adapter_model.safetensors", "rerun train_lora.py"]),
    ("adapter-truncated-steer", "steer", W + G + ["--adapter", "{root}/adapters/truncated"], ["truncated/adapter_model.safetensors"]),
    ("adapter-truncated-peft-dict", "peft_dict", ["--model", "{root}/model", "--adapter", "{root}/adapters/truncated", "--output", "{root}/out.pt"], ["adapter_model.safetensors"]),
    ("adapter-truncated-interp", "interp", W + G + ["--adapter", "{root}/adapters/truncated"], ["truncated/adapter_model.safetensors"]),
    ("adapter-config-corrupt-steer", "steer", W + G + ["--adapter", "{root}/adapters/badcfg"], ["badcfg/adapter_config.json"]),
    ("adapter-config-corrupt-interp", "interp", W + G + ["--adapter", "{root}/adapters/badcfg"], ["badcfg/adapter_config.json"]),
    # --- model files --------------------------------------------------------------------------------
    ("model-truncated-sae", "train_sae", M_TRUNC + TXT + ["--layer", "0"] + SAE_SMALL, ["model_truncated/model.safetensors", "re-download"]),
    ("model-truncated-lora", "train_lora", M_TRUNC + TXT + LORA_SMALL + G, ["model_truncated/model.safetensors"]),
    ("model-truncated-steer", "steer", M_TRUNC + G, ["model_truncated/model.safetensors"]),
    ("model-config-corrupt", "train_sae", M_BADCFG + TXT + ["--layer", "0"] + SAE_SMALL, ["model_badcfg/config.json"]),
    # --- outputs of our own -------------------------------------------------------------------------
    ("results-csv-damaged", "train_lora", W + TXT + LORA_SMALL + G, ["results.csv", "line 3", "rerun the train_lora.py runs"]),
    # --- interp_analysis: behind the error boundary -------------------------------------------------
    ("interp-layer-99", "interp", W + G + ["--layer", "99", "--adapter", "{root}/adapters/good"], ["99"]),
    ("interp-adapter-missing", "interp", W + G + ["--adapter", "{root}/no_adapter"], ["no_adapter"]),
    ("interp-device-cuda", "interp", ["--device", "cuda", "--model", "{root}/model", "--adapter", "{root}/adapters/good"] + G, ["cuda", "--device cpu"]),
    ("interp-no-sae", "interp", W + ["--layer", "0"], ["no normal sae", "layer(s) 0", "train_sae.py"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "argv", "phrases"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_damaged_file_or_bad_value_names_it_in_one_line_and_changes_nothing(
    name, argv, phrases, root, capsys, request
):
    SETUP.get(request.node.callspec.id, lambda root: None)(root)
    if "cuda" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present: --device cuda is valid here")
    err = fail_one_line(name, argv, root, capsys, request.node.callspec.id in MULTI_LINE)
    for phrase in phrases:
        assert phrase.lower() in err.lower(), err


def test_second_matrix_adds_forty_cases_and_both_cover_every_script():
    assert len(CASES) >= 40
    assert not {c[0] for c in CASES} & {c[0] for c in FIRST_CASES}
    assert {c[1] for c in CASES + FIRST_CASES} == set(SCRIPTS) | set(MORE_SCRIPTS)


def test_help_still_prints_the_usage(capsys):
    from test_bad_input import script

    assert script("train_sae").cli(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage:")


def test_bad_flag_value_exits_2_with_one_line_from_the_shell(tmp_path):
    import subprocess

    done = subprocess.run(
        [sys.executable, "train_sae.py", "--k", "banana"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "LORASAE_ROOT": str(tmp_path)},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --k: invalid int value: 'banana' (`train_sae.py --help` lists every flag)"
    ]
    assert not list(tmp_path.iterdir())


def test_json_readers_say_regenerate_for_outputs_and_fix_by_hand_for_configs(tmp_path):
    from lorasae.core.atomic import read_config_json, read_output_json
    from lorasae.core.errors import CorruptFileError

    bad = tmp_path / "curve.json"
    bad.write_text('{\n  "a": [1, 2,\n')
    with pytest.raises(CorruptFileError, match=r"curve\.json is corrupt.*regenerate it: rerun train_sae\.py"):
        read_output_json(bad, "train_sae.py")
    with pytest.raises(
        CorruptFileError, match=r"curve\.json: not valid JSON at line 3.*fix it by hand at line 3"
    ):
        read_config_json(bad)
    assert read_output_json(tmp_path / "missing.json", missing_ok=True) is None
    with pytest.raises(FileNotFoundError, match="missing.json does not exist; eval.py writes it"):
        read_output_json(tmp_path / "missing.json", "eval.py")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"a": "' + BAD_UTF8.strip() + b'"}')
    with pytest.raises(CorruptFileError, match=r"latin\.json is not UTF-8 text \(byte offset 10"):
        read_output_json(latin)


def test_damaged_run_record_names_the_record_and_the_step(tmp_path):
    from lorasae.core.errors import CorruptFileError
    from lorasae.core.records import read_record, record_path, write_record

    out = tmp_path / "curve.json"
    out.write_text("[1]")
    write_record(out, "curve", {"model": "tiny"})
    record_path(out).write_text('{"kind": ')
    with pytest.raises(CorruptFileError, match=rf"{record_path(out).name}.*rerun the step"):
        read_record(out)


def test_damaged_curve_and_results_table_name_their_file_for_figures(tmp_path):
    from lorasae.core.errors import CorruptFileError
    from lorasae.results import load_results_csv, load_sae_curve

    curve = tmp_path / "data" / "TopK" / "val_loss" / "tiny" / "normal_SAE.json"
    curve.parent.mkdir(parents=True)
    curve.write_text("[[0, 1.0], [1,")
    (tmp_path / "data" / "TopK" / "time" / "tiny").mkdir(parents=True)
    (tmp_path / "data" / "TopK" / "time" / "tiny" / "normal_SAE.json").write_text("[0, 1]")
    with pytest.raises(CorruptFileError, match=r"normal_SAE\.json is corrupt.*regenerate it"):
        load_sae_curve(tmp_path, "tiny", "normal")
    (tmp_path / "data" / "results.csv").write_bytes(b"model,rank\ntiny,1\n" + BAD_UTF8)
    with pytest.raises(CorruptFileError, match=r"results\.csv is not UTF-8 text \(byte offset 21"):
        load_results_csv(tmp_path)


def test_append_to_a_damaged_results_table_names_it_and_keeps_it(tmp_path):
    from lorasae.core.atomic import append_csv_row
    from lorasae.core.errors import CorruptFileError

    table = tmp_path / "results.csv"
    table.write_text('model,rank\ntiny,1\n"tiny,2\n')
    with pytest.raises(CorruptFileError, match=r"results\.csv, line \d+ is damaged"):
        append_csv_row(table, {"model": "tiny", "rank": 3})
    assert table.read_text() == 'model,rank\ntiny,1\n"tiny,2\n'


def test_safetensors_check_accepts_a_whole_file_and_names_a_damaged_one(tmp_path):
    import torch
    from safetensors.torch import save_file

    from lorasae.core.errors import CorruptFileError
    from lorasae.core.file_checks import check_safetensors, check_saved_folder

    good = tmp_path / "m" / "model.safetensors"
    good.parent.mkdir()
    save_file({"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(3)}, str(good))
    check_saved_folder(good.parent, "redo it")  # a whole file passes
    data = good.read_bytes()
    for name, damaged in {
        "short.safetensors": data[:-1],  # one byte of the last tensor missing
        "long.safetensors": data + b"\0",  # trailing bytes no tensor covers
        "tiny.safetensors": data[:5],  # not even the header length
        "header.safetensors": data[:8] + b"{not json" + data[17:],
    }.items():
        path = tmp_path / name
        path.write_bytes(damaged)
        with pytest.raises(CorruptFileError, match=rf"{name} .*; redo it\."):
            check_safetensors(path, "redo it")
