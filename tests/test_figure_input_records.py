"""Issue 25 deliver 1: every figure's run record (`<figure>.run.json`) names exactly the files it was drawn
from, with their current digests: the timing figure, the steering histograms, the Dark Matter figures,
the grokking figures and the scale study's figures. After an input changes, the redrawn figure's record
names the new digest (also when the change leaves the figure's bytes alone)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from test_plotting import write_fake_outputs

from lorasae.core.fingerprint import file_digest
from lorasae.core.paths import portable
from lorasae.core.records import SAE_RECORD_KIND, read_record, write_record


def recorded(figure: Path) -> dict[str, str]:
    """{path: digest} as the figure's run record names its inputs."""
    record = read_record(figure)
    assert record is not None and record.kind == "figure", f"{figure} has no figure record"
    return {i["path"]: i["digest"] for i in record.get("inputs")}


def current(files: list[Path]) -> dict[str, str]:
    """{path: digest} of `files` as they are now."""
    return {portable(f): file_digest(f) for f in files}


def _dump(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


# --- the timing figure ------------------------------------------------------------------------------


def _kl_fine_tune(root: Path, val_loss: list[float]) -> tuple[Path, Path]:
    """A TopK checkpoint's record and a KL fine-tune of it (its curve in its record); their record files."""
    normal = root / "saved_saes" / "tiny" / "normal"
    parent = normal / "expansion_8_L0_4-50pct" / "model.layers.1"
    parent.mkdir(parents=True, exist_ok=True)
    (parent / "cfg.json").write_text("{}")
    identity = {"architecture": "topk", "layer": 1, "checkpoint_pct": 50,
                "settings": {"expansion_factor": 8, "k": 4, "objective": "mse"}}  # fmt: skip
    write_record(parent, SAE_RECORD_KIND, identity)
    tuned = normal / "expansion_8_L0_4-50pct__kl" / "model.layers.1"
    tuned.mkdir(parents=True, exist_ok=True)
    (tuned / "cfg.json").write_text("{}")
    identity = {"architecture": "topk", "layer": 1, "checkpoint_pct": None, "init_sae": {"source": portable(parent)},
                "settings": {"expansion_factor": 8, "k": 4, "objective": "kl", "num_train_tokens": 1000}}  # fmt: skip
    result = {"minutes": [0.0, 3.0, 6.0], "val_loss": val_loss}
    write_record(tuned, SAE_RECORD_KIND, identity, extra={"result": result})
    return tuned / "run.json", parent / "run.json"


def test_the_timing_figure_names_the_curves_runs_fine_tunes_and_base_files_it_drew(out_root: Path):
    from lorasae.plotting import plot_timing

    write_fake_outputs(out_root, models=("tiny",))
    kl_files = _kl_fine_tune(out_root, [3.0, 2.9, 2.8])
    png, pdf = plot_timing(out_root, "tiny")
    top = out_root / "data" / "TopK"
    curves = [
        top / q / "tiny" / f"{kind}_SAE.json" for q in ("val_loss", "time") for kind in ("normal", "e2e")
    ]
    # the LoRA runs drawn: those on the 10%..100% checkpoints (not the final SAE's run, an explicit 100% exists)
    drawn = [p for q in ("val_loss", "time") for p in (top / q / "tiny").glob("expansion_8_L0_4-*pct/*.json")]
    assert len(drawn) == 20
    bases = sorted((top / "CE_increase" / "tiny").rglob("*.json"))  # L_base: the median over every run
    expected = current([*curves, *drawn, *bases, *kl_files])
    assert recorded(png) == recorded(pdf) == expected

    tuned_record = _kl_fine_tune(out_root, [3.0, 2.7, 2.6])[0]  # the fine-tune's curve changes
    plot_timing(out_root, "tiny")
    assert (
        recorded(png)[portable(tuned_record)] == file_digest(tuned_record) != expected[portable(tuned_record)]
    )
    assert recorded(png) == current([*curves, *drawn, *bases, *kl_files])


# --- the steering histograms ------------------------------------------------------------------------


def test_the_steering_histograms_name_the_result_file_they_draw(out_root: Path):
    from lorasae.plotting import plot_all

    write_fake_outputs(out_root, models=("tiny",))
    result = out_root / "eval" / "steering" / "results" / "latent_5.json"
    png, pdf = plot_all(out_root, "tiny")["steering:latent_5"]
    assert recorded(png) == recorded(pdf) == current([result])

    before = png.read_bytes()
    raw = json.loads(result.read_text())
    result.write_text(json.dumps(raw | {"alpha": 3.0}))  # not drawn: the same figure, a new digest
    png, pdf = plot_all(out_root, "tiny")["steering:latent_5"]
    assert png.read_bytes() == before
    assert recorded(png) == recorded(pdf) == current([result])


# --- the Dark Matter figures ------------------------------------------------------------------------


def _dark_matter_results(path: Path, scale: float) -> Path:
    """A small results file of the shape `run_dark_matter` writes (the parts the figures draw)."""
    ce = {"original": 2.5, "sae": 3.0, "sae+linear": 2.8, "sae+nonlinear": 2.7}
    rows = [
        {"label": f"w{w}", "width": w, "fvu": scale * f, "linear_fvu": scale * 0.6 * f,
         "nonlinear_fvu": scale * 0.4 * f, "encoder_error": 0.02, "ce": ce}
        for w, f in ((32, 0.5), (64, 0.4), (128, 0.35))
    ]  # fmt: skip
    summary = {
        "width_sweep": rows,
        "power_laws": {q: {"c": 0.1, "a": 2.0, "m": -0.5, "sse": 0.0} for q in ("fvu", "linear_fvu")},
        "per_token_r2": {"labels": ["w32", "w64", "w128"], "matrix": np.eye(3).tolist()},
        "error_saes": {
            "results": [
                {"target": t, "width": w, "test_fvu": 0.5 / w}
                for t in ("linear", "nonlinear")
                for w in (16, 32)
            ]
        },  # fmt: skip
        "synthetic": [
            {
                "injected_linear_fvu": 0.1,
                "injected_nonlinear_fvu": 0.2,
                "recovered_linear_fvu": 0.11,
                "recovered_nonlinear_fvu": 0.19,
            }
        ],  # fmt: skip
        "base_vs_lora": {"base": rows[0], "lora": rows[1]},
    }
    return _dump(path, summary)


def _draw_dark_matter(results: Path, plots: Path) -> list[Path]:
    from lorasae.darkmatter import figures
    from lorasae.darkmatter.powerlaw import PowerLaw

    s = json.loads(results.read_text())
    fits = {q: PowerLaw(**f) for q, f in s["power_laws"].items()}
    given = [results]
    return [
        *figures.plot_decomposition(s["width_sweep"], fits, plots, "t", inputs=given),
        *figures.plot_token_r2(
            np.array(s["per_token_r2"]["matrix"]), s["per_token_r2"]["labels"], plots, "t", inputs=given
        ),  # fmt: skip
        *figures.plot_downstream(s["width_sweep"], plots, "t", inputs=given),
        *figures.plot_error_saes(s["error_saes"]["results"], plots, "t", inputs=given),
        *figures.plot_synthetic(s["synthetic"], plots, inputs=given),
        *figures.plot_base_vs_lora(
            s["base_vs_lora"]["base"], s["base_vs_lora"]["lora"], plots, "t", inputs=given
        ),  # fmt: skip
    ]


def test_the_dark_matter_figures_name_the_results_file_they_draw(out_root: Path):
    results = _dark_matter_results(out_root / "data" / "dark_matter" / "tiny" / "results.json", 1.0)
    plots = out_root / "plots" / "dark_matter" / "tiny"
    made = _draw_dark_matter(results, plots)
    assert len(made) == 12
    first = current([results])
    assert all(recorded(p) == first for p in made)
    _dark_matter_results(results, 1.1)
    assert all(recorded(p) == current([results]) != first for p in _draw_dark_matter(results, plots))


# --- the grokking figures ---------------------------------------------------------------------------


def test_the_grokking_figures_name_the_run_files_they_are_drawn_from(out_root: Path):
    from safetensors.torch import load_file, save_file

    from lorasae.grok import figures
    from lorasae.grok.experiments import ClampResult
    from lorasae.grok_world.train import Curves

    data = out_root / "data" / "grok" / "run"
    steps = [0, 10, 20, 30]
    curves_file = _dump(data / "curves.json", {"step": steps, "train_loss": [2.0, 1.0, 0.5, 0.1],
                        "train_acc": [0.1, 0.5, 1.0, 1.0], "test_loss": [2.0, 1.8, 1.0, 0.2],
                        "test_acc": [0.1, 0.2, 0.6, 0.99], "seconds": [0, 1, 2, 3]})  # fmt: skip
    sae_file = out_root / "saved_saes" / "grok-run-final" / "sae.safetensors"
    sae_file.parent.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    p = 5
    save_file({"z_pre": torch.rand(p * p, 6, generator=gen), "z_post": torch.rand(p * p, 6, generator=gen),
               "rel": torch.rand(6, generator=gen), "attr": torch.randn(2, p * p, 3, generator=gen)}, sae_file)  # fmt: skip
    plots = out_root / "plots"

    def draw() -> dict[str, Path]:
        curves = Curves(**json.loads(curves_file.read_text()))
        t = load_file(sae_file)
        ids = torch.tensor([[a, b, p] for a in range(p) for b in range(p)])
        clamp = [ClampResult(c, s, [1, 2], curves, 0.5, 0.5) for c, s in (("targeted", None), ("random", 0))]
        points = {"pre": np.random.default_rng(0).normal(size=(p * p, 2))}
        return {
            "accuracy": figures.plot_accuracy(curves, "run", plots, {"pre": 10}, [curves_file]),
            "clamp": figures.plot_clamp(clamp, curves, "run", plots, [curves_file, sae_file]),
            "latent_grid": figures.plot_latent_grid(
                t["z_pre"], t["z_post"], [0, 1], p, "run", plots, [sae_file]
            ),
            "attribution": figures.plot_attribution(t["attr"], ids, [0, 1], p, "run", plots, [sae_file]),
            "embedding": figures.plot_embedding(points, np.arange(p * p), "t-SNE", "run", plots, [sae_file]),
            "norms": figures.plot_relative_norms(t["rel"], "run", plots, [sae_file]),
        }

    made = draw()
    for what, figure in made.items():
        files = (
            [curves_file]
            if what == "accuracy"
            else [curves_file, sae_file]
            if what == "clamp"
            else [sae_file]
        )
        assert recorded(figure) == recorded(figure.with_suffix(".pdf")) == current(files), what
    before = current([curves_file])
    raw = json.loads(curves_file.read_text())
    _dump(curves_file, raw | {"test_acc": [0.1, 0.3, 0.7, 1.0]})
    made = draw()
    for what in ("accuracy", "clamp"):
        assert (
            recorded(made[what])[portable(curves_file)]
            == file_digest(curves_file)
            != before[portable(curves_file)]
        )


# --- the scale study's figures ----------------------------------------------------------------------


def _scale_results(root: Path, gap: float) -> dict:
    """The study's results as `run_study` returns them, read from small result files it would write."""
    from lorasae.scale.config import Point

    folder = root / "data" / "scale_study"
    plan = {
        "rank": [Point("m", 2, 4, 0), Point("m", 4, 4, 0)],
        "examples": [Point("m", 2, 4, 0), Point("m", 2, 8, 0)],
        "size": [Point("m-s", 1, 4, 0), Point("m", 2, 4, 0)],
    }
    bench = {"mean": {"acc": 0.5, "se": 0.01}}
    files: dict = {"models": {}, "points": {}, "speed": folder / "speed.json"}
    for name, n in (("m-s", 5e5), ("m", 1e6)):
        files["models"][name] = _dump(folder / "models" / f"{name}.json",
                                      {"n_params": n, "bench_base": bench, "bench_base_sae": bench})  # fmt: skip
    for point in dict.fromkeys(q for qs in plan.values() for q in qs):
        d = 4 if point.model == "m-s" else 8
        result = {"model": point.model, "d_model": d, "rank_ratio": point.rank / d, "L_SAE": 3.0, "L_base": 2.5,
                  "pct_gap_closed": gap + point.rank + point.examples, "gap_se": 0.01, "bench_lora": bench,
                  "bench_lora_sae": bench, "steering": {"base_effect": 1.0, "lora_minus_base": 0.5,
                                                        "lora_minus_base_se": 0.1}}  # fmt: skip
        files["points"][point] = _dump(folder / "points" / f"{point.key}.json", result)
    rows = [{"model": "m", "layer": layer, "predicted": {"after_over_before": 1.0 + layer, "e2e_over_topk": 2.0},
             "measured": {"e2e_over_topk": 2.5}} for layer in (0, 1)]  # fmt: skip
    _dump(files["speed"], {"rows": rows})
    read = lambda path: json.loads(path.read_text())  # noqa: E731
    return {"plan": plan, "models": {m: read(f) for m, f in files["models"].items()},
            "points": {q: read(f) for q, f in files["points"].items()}, "speed": read(files["speed"]),
            "files": files}  # fmt: skip


def test_the_scale_study_figures_name_the_point_and_model_files_of_their_rows(out_root: Path, capsys):
    from lorasae.scale.config import ScaleStudyConfig
    from lorasae.scale.report import write_report

    cfg = ScaleStudyConfig(models=["m-s", "m"])
    results = _scale_results(out_root, 30.0)
    out = write_report(results, cfg)
    files = results["files"]

    def expected(question: str) -> dict[str, str]:
        points = results["plan"][question]
        return current([*(files["points"][p] for p in points), *(files["models"][p.model] for p in points)])

    for question in ("rank", "examples", "size"):
        assert recorded(out[question]) == recorded(out[question].with_suffix(".pdf")) == expected(question)
    assert recorded(out["speed"]) == current([files["speed"]])
    assert read_record(out["table"]).kind == "scale_study_report"

    changed = files["points"][results["plan"]["rank"][1]]  # a point of the rank question only
    before = file_digest(changed)
    results = _scale_results(out_root, 40.0)
    out = write_report(results, cfg)
    assert recorded(out["rank"])[portable(changed)] == file_digest(changed) != before
    for question in ("rank", "examples", "size"):
        assert recorded(out[question]) == expected(question)
