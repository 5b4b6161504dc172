"""Which merged model SAE-Bench's `--model_variant peft` evaluates, read from run records (issue 25): a merged
state dict (`get_peft_dict.py`) is used only when its record names exactly the adapter the eval resolved (path,
run record and weights), the model's weights and an SAE the adapter was trained on, never because it is newer;
otherwise the adapter is merged in memory (the default file, with a note) or the run is refused (a file passed
with --peft_dict). The merge dtype is part of the result's identity and, off the model's dtype, of its slot."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model
from test_saebench_e2e import _args, saved_setup  # noqa: F401  (saved_setup: a fixture)

from lorasae.core.paths import portable
from lorasae.core.records import read_record, record_path
from lorasae.saebench.args import peft_dict_path
from lorasae.saebench.load import save_peft_dict
from lorasae.saebench.peft_dict import PeftDictMismatchError
from lorasae.saebench.run import run

pytestmark = pytest.mark.usefixtures("one_thread")

SKIP_LINE = "exists for these settings (run record"


def _adapter(folder: Path, seed: int) -> Path:
    """A rank-2 adapter on layers 1-2 with non-zero B drawn from `seed`, saved at `folder`."""
    from lorasae.lora.adapters import attach_lora

    peft_model = attach_lora(make_tiny_model("llama"), [1, 2], rank=2)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed + len(name)))
    peft_model.save_pretrained(folder)
    return folder


def _clean_ce(path: Path) -> float:
    return json.loads(path.read_text())["eval_result_metrics"]["model_performance_preservation"][
        "ce_loss_without_sae"
    ]


def test_a_newer_merged_file_of_another_adapter_is_not_used_and_the_record_says_what_was(
    saved_setup,  # noqa: F811
    out_root,
    capsys,
):
    older = _adapter(out_root / "one" / "adapter", seed=1)
    newer = _adapter(out_root / "two" / "adapter", seed=2)
    merged = save_peft_dict(saved_setup["model"], older, None)
    assert merged == peft_dict_path(saved_setup["model"], newer)  # both adapters' default merged file
    stamp = max(p.stat().st_mtime for p in newer.iterdir()) + 100
    os.utime(merged, (stamp, stamp))  # the older adapter's merge looks newer than the newer adapter
    capsys.readouterr()

    with_newer = run(_args({**saved_setup, "adapter": str(newer)}, "peft", "core"))["core"]
    out = capsys.readouterr().out
    assert f"{portable(merged)} was not used" in out and "merged from another adapter" in out
    record = read_record(with_newer)
    assert record.get("adapter") == portable(newer)
    assert str(record_path(merged)) not in record.parents  # merged in memory from the adapter it names

    with_older = run(_args({**saved_setup, "adapter": str(older)}, "peft", "core"))["core"]
    record = read_record(with_older)
    assert record.get("adapter") == portable(older)
    assert str(record_path(merged)) in record.parents  # its own merge: used, and named as a parent
    from_file = _clean_ce(with_older)
    assert from_file != pytest.approx(_clean_ce(with_newer))

    # the same merge done in memory is the same run (the file only carried the weights): skipped, and
    # redone it gives the numbers the merged file gave
    merged.unlink()
    capsys.readouterr()
    args = _args({**saved_setup, "adapter": str(older)}, "peft", "core")
    assert run(args)["core"] == with_older and SKIP_LINE in capsys.readouterr().out
    in_memory = run(replace(args, overwrite=True))["core"]
    assert in_memory == with_older and str(record_path(merged)) not in read_record(in_memory).parents
    assert _clean_ce(in_memory) == pytest.approx(from_file, abs=1e-5)


def test_a_merged_file_passed_for_another_adapter_or_a_retrained_one_is_refused_in_one_line(
    saved_setup,  # noqa: F811
    out_root,
):
    older = _adapter(out_root / "one" / "adapter", seed=1)
    newer = _adapter(out_root / "two" / "adapter", seed=2)
    merged = save_peft_dict(saved_setup["model"], older, out_root / "merged.pt")
    explicit = ["--peft_dict", str(merged)]
    with pytest.raises(PeftDictMismatchError) as refused:
        run(_args({**saved_setup, "adapter": str(newer)}, "peft", "core", explicit))
    message = str(refused.value)
    assert "\n" not in message and str(merged) in message and "get_peft_dict.py" in message
    assert "merged from another adapter" in message
    assert not list((out_root / "eval" / "SAE-Bench" / "results").glob("*/*/core.json"))  # nothing written

    _adapter(older, seed=3)  # retrained in place: the same folder, other weights
    with pytest.raises(PeftDictMismatchError, match="weights changed since"):
        run(_args({**saved_setup, "adapter": str(older)}, "peft", "core", explicit))
    unrecorded = out_root / "copy.pt"
    unrecorded.write_bytes(merged.read_bytes())
    with pytest.raises(PeftDictMismatchError, match="no run record"):
        run(_args({**saved_setup, "adapter": str(older)}, "peft", "core", ["--peft_dict", str(unrecorded)]))


def _get_peft_dict(argv: list[str]) -> None:
    script = Path(__file__).resolve().parent.parent / "eval" / "SAE-Bench" / "get_peft_dict.py"
    spec = importlib.util.spec_from_file_location("get_peft_dict_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.cli(argv) in (0, None)


def test_a_run_differing_only_in_merge_dtype_is_another_run_in_another_slot(
    saved_setup,  # noqa: F811
    out_root,
    capsys,
):
    merge = ["--model", saved_setup["model"], "--adapter", saved_setup["adapter"]]
    _get_peft_dict(merge)
    args = _args(saved_setup, "peft", "core")
    full = run(args)["core"]
    record = read_record(full)
    assert record.get("settings")["merge_dtype"] == "float32" and "merge-" not in full.parent.name
    before = full.read_bytes()

    _get_peft_dict([*merge, "--dtype", "bfloat16"])  # the same file, merged again in bfloat16
    capsys.readouterr()
    half = run(args)["core"]
    assert SKIP_LINE not in capsys.readouterr().out  # not the same run
    assert half != full and full.read_bytes() == before  # beside it, not over it
    assert "__merge-bfloat16" in half.parent.name and half.parent.name.endswith(record.get("variant"))
    assert read_record(half).get("settings")["merge_dtype"] == "bfloat16"
    assert _clean_ce(half) != _clean_ce(full)
    run(args)
    assert f"core: {portable(half)} {SKIP_LINE}" in capsys.readouterr().out  # now an identical rerun

    base = run(_args(saved_setup, "base", "core"))["core"]  # base results have no merge dtype
    assert "merge_dtype" not in read_record(base).get("settings") and "merge-" not in base.parent.name
