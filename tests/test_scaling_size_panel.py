"""The scaling figure's model-size panel (issue 30): the sweep manifest's `model_size` (model → its SAE)
puts one point per model and rank in a fourth column, x = the model's parameters from its world.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lorasae.plotting import scaling
from lorasae.results import load_results_csv
from tests.test_plotting import write_fake_outputs

TAG = "layer_12_width_16k_average_l0_82"
PARAMS = {"tiny-s": 600_000, "tiny": 1_600_000}


@pytest.fixture
def sized_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    write_fake_outputs(tmp_path, models=("tiny-s", "tiny"))
    for model, n in PARAMS.items():
        folder = tmp_path / "saved_models" / model
        folder.mkdir(parents=True)
        (folder / "world.json").write_text(json.dumps({"n_params": n}))
    return tmp_path


def test_model_params_come_from_world_json_or_the_name(sized_root: Path) -> None:
    assert scaling.model_params_millions("tiny-s") == pytest.approx(0.6)
    assert scaling.model_params_millions("tiny") == pytest.approx(1.6)
    assert scaling.model_params_millions("google/gemma-2-2b") == pytest.approx(2000)


def test_size_table_has_one_point_per_model_and_rank_on_its_own_sae(sized_root: Path) -> None:
    df = load_results_csv(sized_root)
    table = scaling.model_size_table(df, {"tiny-s": TAG, "tiny": TAG})
    raw = pd.read_csv(sized_root / "data" / "results.csv")
    raw = raw[(raw["sae_tag"] == TAG) & (raw["lora_layers"] == "13-25")]  # the multi-layer runs
    assert sorted(table["rank"].unique()) == [1, 4, 16, 64]
    for (model, rank), rows in table.groupby(["model", "rank"]):
        assert len(rows) == 1
        expected = raw[(raw["model"] == model) & (raw["rank"] == rank)].iloc[-1]
        assert rows["x"].iloc[0] == pytest.approx(PARAMS[model] / 1e6)
        assert rows["ce_improvement"].iloc[0] == pytest.approx(expected["L_SAE"] - expected["L_LoRA"])


def test_scaling_grid_gets_a_size_column_with_two_points_per_rank(
    sized_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = {}

    def keep(fig, folder, name, inputs=()):
        saved["fig"] = fig
        return [Path(folder) / f"{name}.png"]

    monkeypatch.setattr(scaling, "save_figure", keep)
    scaling.plot_scaling_grid(sized_root, "tiny", size_tags={"tiny-s": TAG, "tiny": TAG})
    axes = saved["fig"].axes
    assert len(axes) == 8  # 2 rows × (L0, width, layer, model size)
    size_abs, size_pct = axes[3], axes[7]
    assert size_abs.get_title().startswith("vs model size")
    for ax in (size_abs, size_pct):
        lines = ax.get_lines()
        assert len(lines) == 4  # one per rank
        assert all(list(line.get_xdata()) == pytest.approx([0.6, 1.6]) for line in lines)
    scaling.plot_scaling_grid(sized_root, "tiny", size_tags={"tiny": TAG})  # one model: no size column
    assert len(saved["fig"].axes) == 6
