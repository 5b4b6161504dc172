"""Loaders of lorasae.results and every figure function of lorasae.plotting, on synthetic output files
written in the formats of SPEC §3.4 (`write_fake_outputs` is also used by tests/test_notebook.py)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lorasae.plotting import (
    improvement_table,
    plot_all,
    plot_improvement_vs,
    plot_improvement_vs_model_size,
    plot_scaling_grid,
    plot_single_layer_lora,
    plot_steering_histograms,
    plot_timing,
)
from lorasae.results import (
    RESULTS_COLUMNS,
    MissingResultsError,
    find_steering_results,
    load_base_ce,
    load_lora_runs,
    load_results_csv,
    load_sae_curve,
    load_steering_deltas,
    load_timing_data,
    model_size_billions,
    parse_layers,
    parse_lora_filename,
    parse_sae_tag,
    sanitize,
    select_model,
)
from lorasae.results.speedup import compute_speedup

L_BASE = 2.5


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _n_label(n: int) -> str:
    v = n / 1000
    return str(int(v)) if v == int(v) else f"{v:g}"


def _lora_files(
    root: Path, model: str, tag: str, a: int, b: int, rank: int, n: int, l_sae: float, frac: float
):
    """LoRA curve from L_SAE down to L_SAE - frac*gap (16 points, 20 minutes) and its CE summary."""
    d, name = f"{sanitize(model)}/{tag}", f"peft_{a}-{b}_rank_{rank}"
    minutes = np.linspace(0, 20, 16)
    ce = l_sae - frac * (l_sae - L_BASE) * (1 - np.exp(-minutes / 5)) / (1 - np.exp(-4))
    top = root / "data" / "TopK"
    _dump(top / "val_loss" / d / f"{name}_val_losses_{_n_label(n)}k.json", ce.tolist())
    _dump(top / "time" / d / f"{name}_time_{_n_label(n)}k.json", minutes.tolist())
    summary = {
        "initial": l_sae,
        "converged": float(ce[-1]),
        "difference": l_sae - float(ce[-1]),
        "base": L_BASE,
    }
    _dump(top / "CE_increase" / d / f"{name}_CE_increase_{_n_label(n)}k.json", summary)
    return float(ce[-1])


def _row(model, tag, sae_layers, lora_layers, rank, n, width, l0, pct, l_sae, l_lora, stamp) -> dict:
    gap, imp = l_sae - L_BASE, l_sae - l_lora
    return dict(
        model=model, sae_tag=tag, sae_source=f"saved_saes/{tag}", sae_layers=sae_layers,
        lora_layers=lora_layers, rank=rank, num_examples=n, sae_width=width, sae_l0=l0,
        checkpoint_pct="" if pct is None else pct, L_base=L_BASE, L_SAE=l_sae, L_LoRA=l_lora, ce_gap=gap,
        ce_improvement=imp, frac_gap_closed=imp / gap, minutes=20.0, timestamp=f"2026-01-01T00:{stamp:02d}:00",
    )  # fmt: skip


def write_fake_outputs(root: Path, models: tuple[str, ...] = ("tiny", "google/gemma-2-2b")) -> None:
    """For each model: TopK and e2e SAE curves, LoRA runs on the 10%..100% checkpoints and the final
    SAE, L0/width/layer sweeps over 4 ranks, single-layer runs; one results.csv; steering deltas; one
    interpretability record (tiny)."""
    rows, stamp = [], 0
    for m_i, model in enumerate(models):
        p = np.linspace(0, 1, 101)
        top = root / "data" / "TopK"
        _dump(
            top / "val_loss" / sanitize(model) / "normal_SAE.json",
            (L_BASE + 0.3 + 2 * np.exp(-10 * p)).tolist(),
        )
        _dump(top / "time" / sanitize(model) / "normal_SAE.json", (120 * p).tolist())
        _dump(
            top / "val_loss" / sanitize(model) / "e2e_SAE.json", (L_BASE + 0.08 + 2 * np.exp(-4 * p)).tolist()
        )
        _dump(top / "time" / sanitize(model) / "e2e_SAE.json", (400 * p).tolist())
        for pct in [*range(10, 101, 10), None]:
            tag = "expansion_8_L0_4" + (f"-{pct}pct" if pct else "")
            l_sae = L_BASE + 0.3 + 2 * np.exp(-10 * (pct or 100) / 100)
            l_lora = _lora_files(root, model, tag, 2, 3, 16, 300, l_sae, 0.5)
            rows.append(_row(model, tag, "1", "2-3", 16, 300, 1024, 4, pct, l_sae, l_lora, stamp))
        sweeps = [(12, 16384, l0) for l0 in (22, 41, 82, 176)]  # L0 sweep
        sweeps += [(12, 2**w, 80 - w) for w in (15, 16, 17)]  # width sweep: 32k, 65k, 131k
        sweeps += [(layer, 16384, 70 + layer) for layer in (6, 9, 15)]  # layer sweep
        for layer, width, l0 in sweeps:
            tag = f"layer_{layer}_width_{width // 1000}k_average_l0_{l0}"
            for rank in (1, 4, 16, 64):
                l_sae = L_BASE + 0.4 * (1 + 20 / l0) * (1 + m_i)
                frac = 0.3 + 0.05 * math.log2(rank) / 2
                l_lora = _lora_files(root, model, tag, layer + 1, 25, rank, 15000, l_sae, frac)
                stamp += 1
                rows.append(_row(model, tag, str(layer), f"{layer + 1}-25", rank, 15000, width, l0, None, l_sae, l_lora, stamp))  # fmt: skip
        # SAEs at layers 6 and 9 at once, one LoRA on the layers after both (as the single layer-9 runs)
        l_sae = L_BASE + 0.4 * (1 + 20 / 76) * (1 + m_i) + 0.5
        tag = "layers_6+9__layer_6_width_16k_average_l0_76"
        l_lora = _lora_files(root, model, tag, 10, 25, 16, 15000, l_sae, 0.2)
        stamp += 1
        rows.append(_row(model, tag, "6,9", "10-25", 16, 15000, 16384, 76, None, l_sae, l_lora, stamp))
        tag = "layer_12_width_16k_average_l0_82"
        for k, layer in enumerate(range(13, 19)):
            l_sae = L_BASE + 0.4 * (1 + 20 / 82) * (1 + m_i)
            l_lora = _lora_files(root, model, tag, layer, layer, 64, 15000, l_sae, 0.25 / (k + 1))
            rows.append(_row(model, tag, "12", str(layer), 64, 15000, 16384, 82, None, l_sae, l_lora, stamp))
    write_results_csv(root, rows)
    rng = np.random.default_rng(0)  # the steering eval's results file: Δs per model and example set
    deltas = {
        kind: {"positive": rng.normal(mu, 0.05, 50).tolist()}
        | {name: rng.normal(0, 0.03, 25).tolist() for name in ("arabic", "recipes")}
        for kind, mu in (("base", 0.05), ("lora", 0.12))
    }
    _dump(
        root / "eval" / "steering" / "results" / "latent_5.json",
        {"latent": 5, "alpha": 2.0, "deltas": deltas},
    )
    _dump(root / "eval" / "steering" / "results" / "notes.json", {"latent": 5})  # not Δs: ignored
    write_fake_interp_record(root)


def write_results_csv(root: Path, rows: list[dict]) -> None:
    """`data/results.csv` of `root` with `rows` (`_row`'s)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    with open(root / "data" / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(RESULTS_COLUMNS))
        w.writeheader()
        w.writerows(rows)


def write_fake_interp_record(root: Path, model: str = "tiny") -> Path:
    """An interpretability record (`lorasae.interp`) built by its own summary code from synthetic
    per-sequence distances and per-token losses."""
    import torch

    from lorasae.core.paths import interp_json_path
    from lorasae.interp.pipeline import RawMetrics, summarise_metrics

    gen = torch.Generator().manual_seed(0)
    n, layers = 40, [1, 2, 3]
    growth = torch.tensor([1.0, 1.6, 2.2])
    l2 = {"base": growth + 0.1 * torch.rand(n, 3, generator=gen)}
    l2["lora"] = l2["base"] - 0.2 * growth + 0.05 * torch.rand(n, 3, generator=gen)
    cosine = {v: 1 - 0.1 * d for v, d in l2.items()}
    clean = 2.5 + torch.rand(n, 63, generator=gen)
    sae = clean + torch.rand(n, 63, generator=gen)
    lora = sae - 0.5 * torch.randn(n, 63, generator=gen).abs() * torch.sign(
        torch.randn(n, 63, generator=gen) + 1
    )
    raw = RawMetrics(layers, l2, cosine, {"clean": clean, "sae": sae, "lora_sae": lora})
    record = {"model": model, "sae": "fake", "sae_tag": "expansion_8_L0_4", "layer": 1, "adapter": "fake"}
    record |= summarise_metrics(raw, 1, resamples=200)
    path = interp_json_path(model, "expansion_8_L0_4", "peft_0-3_rank_16", base=root)
    _dump(path, record)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_fake_outputs(tmp_path)
    return tmp_path


def _assert_figures(paths: list[Path], names: tuple[str, ...]) -> None:
    assert sorted(p.name for p in paths) == sorted(names)
    for p in paths:
        assert p.is_file() and p.stat().st_size > 1000
    png = next(p for p in paths if p.suffix == ".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- parsing --------------------------------------------------------------------------------------


def test_parse_names():
    t = parse_sae_tag("expansion_8_L0_64-30pct")
    assert (t.base, t.checkpoint_pct, t.expansion, t.l0) == ("expansion_8_L0_64", 30, 8, 64)
    assert parse_sae_tag("expansion_8_L0_64").checkpoint_pct is None
    g = parse_sae_tag("layer_12_width_16k_average_l0_82")
    assert (g.layer, g.width, g.l0, g.checkpoint_pct) == (12, 16384, 82, None)
    assert parse_sae_tag("layer_20_width_131k_average_l0_62").width == 131072
    assert parse_sae_tag("width_1m_l0_10").width == 2**20 and parse_sae_tag("width_10k").width == 10000
    f = parse_lora_filename("peft_13-25_rank_64_val_losses_15k.json")
    assert (f.quantity, f.first_layer, f.last_layer, f.rank, f.num_examples) == (
        "val_loss",
        13,
        25,
        64,
        15000,
    )
    f = parse_lora_filename("peft_2-3_rank_1_CE_increase_0.3k.json")
    assert (f.quantity, f.num_examples) == ("CE_increase", 300)
    assert parse_lora_filename("peft_13_rank_64_time_100k.json").last_layer == 13
    assert parse_lora_filename("peft_1-2_rank_4_time_15.0k.json").num_examples == 15000
    assert parse_lora_filename("notes.json") is None
    assert parse_layers("1") == [1] and parse_layers("2-3") == [2, 3] and parse_layers("1,3") == [1, 3]
    assert parse_layers("1,4-6") == [1, 4, 5, 6] and parse_layers("") is None
    assert model_size_billions("google/gemma-2-2b") == 2 and model_size_billions("Llama-3.2-1B") == 1
    assert model_size_billions("gemma") == 2 and model_size_billions("gemma-9b") == 9
    assert model_size_billions("Qwen2.5-0.5B") == 0.5 and model_size_billions("pythia-160m") == 0.16
    assert math.isnan(model_size_billions("tiny"))


def test_loaders(root: Path):
    curve = load_sae_curve(root, "tiny", "normal")
    assert len(curve) == 101 and curve.minutes[0] == 0 and curve.minutes_at_progress(0.3) == pytest.approx(36)
    runs = load_lora_runs(root, "google/gemma-2-2b")  # the model name is sanitised into a folder name
    assert len(runs) == 11 + 10 * 4 + 1 + 6  # checkpoints, sweeps, the multi-SAE run, single layers
    ckpt = [r for r in runs if r.sae.base == "expansion_8_L0_4"]
    assert [r.checkpoint_pct for r in ckpt] == [*range(10, 101, 10), None]
    r = ckpt[2]
    assert (r.lora_layers, r.rank, r.num_examples, r.L_base) == ("2-3", 16, 300, L_BASE)
    assert r.curve is not None and len(r.curve) == 16 and r.L_SAE == pytest.approx(r.curve.ce[0])
    assert load_base_ce(root, "tiny") == L_BASE

    df = load_results_csv(root)
    assert df["rank"].dtype == float and all(isinstance(v, str) for v in df["sae_layers"])
    row = df[(df["lora_layers"] == "13") & (df["model"] == "tiny")].iloc[0]
    assert (row["lora_kind"], row["sae_layer"], row["lora_first"]) == ("single", 12, 13)
    assert set(df[df["lora_layers"] == "13-25"]["lora_kind"]) == {"after"}
    assert math.isnan(df[df["sae_tag"] == "expansion_8_L0_4"]["checkpoint_pct"].iloc[0])

    data = load_timing_data(root, "tiny")
    assert data.config == ("expansion_8_L0_4", "2-3", 16, 300)
    assert [pct for pct, _, _ in data.checkpoints] == [float(p) for p in range(10, 101, 10)]
    assert data.checkpoints[0][1] == pytest.approx(12.0)  # 10% of 120 minutes
    deltas = load_steering_deltas(find_steering_results(root)[0])
    assert [p.name for p in find_steering_results(root)] == ["latent_5.json"]
    assert deltas["lora"]["positive"].shape == (50,) and deltas["lora"]["negative"].shape == (50,)
    assert set(load_steering_deltas(find_steering_results(root)[0], combine_negatives=False)["base"]) == {
        "positive",
        "arabic",
        "recipes",
    }


def test_missing_files_say_what_to_run(tmp_path: Path):
    with pytest.raises(MissingResultsError, match="train_sae.py"):
        load_sae_curve(tmp_path, "tiny", "e2e")
    with pytest.raises(MissingResultsError, match="train_lora.py"):
        load_lora_runs(tmp_path, "tiny")
    with pytest.raises(MissingResultsError, match="results.csv"):
        load_results_csv(tmp_path)
    with pytest.raises(ValueError):
        load_sae_curve(tmp_path, "tiny", "topk")
    assert plot_all(tmp_path, "tiny", out_dir=tmp_path / "p") == {
        "timing": [],
        "scaling": [],
        "single_layer": [],
        "multi_sae": [],
        "model_size": [],
    }


def test_improvement_table_holds_the_other_quantities_fixed(root: Path):
    df = load_results_csv(root)
    df = df[df["model"] == "tiny"]
    l0 = improvement_table(df, "l0")
    assert sorted(set(l0["x"])) == [22, 41, 82, 176] and set(l0["rank"]) == {1, 4, 16, 64}
    assert set(l0["sae_width"]) == {16384} and set(l0["sae_layer"]) == {12}
    width = improvement_table(df, "width", ranks=[64])
    assert sorted(width["x"]) == [16384, 32768, 65536, 131072]
    assert set(width["sae_layer"]) == {12} and set(width["rank"]) == {64}
    layer = improvement_table(df, "layer")
    assert sorted(set(layer["x"])) == [6, 9, 12, 15]
    np.testing.assert_allclose(
        layer["pct_gap_closed"], 100 * (layer["ce_improvement"] / (layer["L_SAE"] - L_BASE))
    )


# --- figures --------------------------------------------------------------------------------------


def test_timing_plot_and_speedup(root: Path):
    out = root / "plots"
    _assert_figures(plot_timing(root, "tiny"), ("tiny_timing.png", "tiny_timing.pdf"))
    paths = plot_timing(root, "google/gemma-2-2b", rank=16, time_unit="minutes", out_dir=out / "x")
    _assert_figures(paths, ("google--gemma-2-2b_timing.png", "google--gemma-2-2b_timing.pdf"))
    table = compute_speedup(root, "tiny")
    assert len(table) == 8 and {"target_ce", "speedup", "status"} <= set(table.columns)
    ok = table[table["status"] == "ok"]
    assert len(ok) and (ok["speedup"] > 1).all()  # the synthetic e2e SAE is slow


def test_scaling_figures(root: Path):
    _assert_figures(plot_scaling_grid(root, "tiny"), ("tiny_scaling.png", "tiny_scaling.pdf"))
    for x in ("l0", "width", "layer"):
        paths = plot_improvement_vs(root, "google/gemma-2-2b", x)
        _assert_figures(paths, (f"google--gemma-2-2b_improvement_vs_{x}.png", f"google--gemma-2-2b_improvement_vs_{x}.pdf"))  # fmt: skip
    names = ("model_size_scaling.png", "model_size_scaling.pdf")
    _assert_figures(plot_improvement_vs_model_size(root), names)  # "tiny" has no size: categorical
    _assert_figures(plot_improvement_vs_model_size(root, ["tiny", "google/gemma-2-2b"]), names)
    with pytest.raises(MissingResultsError, match="at least two models.*only \\['google/gemma-2-2b'\\]"):
        plot_improvement_vs_model_size(root, ["google/gemma-2-2b"])
    with pytest.raises(MissingResultsError):
        plot_improvement_vs(root, "llama", "l0")


def test_single_layer_and_steering(root: Path, tmp_path: Path):
    paths = plot_single_layer_lora(root, "tiny")
    _assert_figures(paths, ("tiny_single_layer_lora.png", "tiny_single_layer_lora.pdf"))
    with pytest.raises(MissingResultsError, match="rank"):
        plot_single_layer_lora(root, "tiny", rank=3)
    deltas = load_steering_deltas(find_steering_results(root)[0])
    paths = plot_steering_histograms(deltas, tmp_path / "s" / "latent_5.png", title="latent 5")
    _assert_figures(paths, ("latent_5.png", "latent_5.pdf"))
    paths = plot_steering_histograms({"lora": {"negative": np.zeros(3)}}, tmp_path / "s" / "only_neg")
    _assert_figures(paths, ("only_neg.png", "only_neg.pdf"))
    with pytest.raises(ValueError):
        plot_steering_histograms({}, tmp_path / "s" / "none")


def test_plot_all(root: Path):
    made = plot_all(root, "tiny")
    assert set(made) == {"timing", "scaling", "single_layer", "multi_sae", "model_size", "steering:latent_5"}
    assert all(len(v) == 2 for v in made.values())


def test_multi_sae_table_pairs_the_joint_run_with_each_sae_alone(root: Path):
    from lorasae.plotting import multi_sae_table

    table = multi_sae_table(select_model(load_results_csv(root), "tiny"))
    # the joint run first; the layer-9 SAE alone has the same rank, examples and LoRA layers (10-25);
    # the layer-6 one was adapted on 7-25, so it is no like-for-like comparison and is left out
    assert table["config"].tolist() == ["SAE@6+9", "SAE@9"]
    joint, alone = table.iloc[0], table.iloc[1]
    assert joint["lora_layers"] == alone["lora_layers"] == "10-25" and alone["rank"] == 16
    expected = 100 * (joint["L_SAE"] - joint["L_LoRA"]) / (joint["L_SAE"] - joint["L_base"])
    assert joint["pct_gap_closed"] == pytest.approx(expected) == pytest.approx(20.0)
    with pytest.raises(MissingResultsError, match="several SAEs"):
        multi_sae_table(select_model(load_results_csv(root), "tiny"), rank=1)


def test_multi_sae_table_takes_the_very_sae_of_the_joint_run_over_a_newer_one_of_the_same_width_and_l0(
    tmp_path: Path,
):
    """A KL fine-tune of the main SAE has its width and L0 and is adapted later: the row "SAE@1 alone" must
    still be the run on the SAE the joint run spliced at layer 1 (its `sae_source`)."""
    from lorasae.plotting import multi_sae_table

    def row(tag, source, layers, l_sae, l_lora, stamp):
        return {
            **_row("tiny", tag, layers, "0-3", 16, 160, 1024, 4, None, l_sae, l_lora, stamp),
            "sae_source": source,
        }

    rows = [
        row("layers_1+2__main", "saes/main/model.layers.1;saes/main/model.layers.2", "1-2", 2.6, 2.3, 1),
        row("main", "saes/main/model.layers.1", "1", 2.03, 1.84, 2),
        row("main__kl-ft", "saes/main__kl-ft/model.layers.1", "1", 1.89, 1.81, 3),
        row("layer_2__main", "saes/layer_2/model.layers.2", "2", 2.14, 1.93, 4),
    ]
    (tmp_path / "data").mkdir()
    with open(tmp_path / "data" / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(RESULTS_COLUMNS))
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in RESULTS_COLUMNS} for r in rows)
    table = multi_sae_table(select_model(load_results_csv(tmp_path), "tiny"))
    assert table["config"].tolist() == ["SAE@1+2", "SAE@1", "SAE@2"]
    assert table.iloc[1]["L_SAE"] == pytest.approx(2.03)  # not the newer fine-tune's 1.89
    assert table.iloc[2]["L_SAE"] == pytest.approx(2.14)  # no exact source at layer 2: its family's newest
