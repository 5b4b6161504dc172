"""The grokking study end to end (`make grok`, `eval/grok/run.py`): train (or reuse) the featurizing model
until it groks, pick the pre-generalization checkpoint, train SAEs on its and the final model's answer
activations and a crosscoder across both, rank the latents that differ, clamp them while training
continues (against random latents, several seeds), draw the figures and write `data/grok/<run>/study.json`.

The SAEs and the crosscoder are trained by `train_sae.py`'s own entry (`train_sae(parse_with_config_file(
TrainSaeConfig, ...))`) from the config files `configs/grok-{pre,post,crosscoder}.json`, on the run's train
problems at the answer position (`--dataset grok:<task> --positions -2`, `lorasae/grok_world/data.py`); the study
only sets the models (its checkpoint folders), the dataset and the layer, and reads the SAEs back from the
folders train_sae.py wrote (`lorasae.sae.registry.load_ours`). They land where train_sae.py puts them:
`saved_saes/grok-<run>-<step_N|final>/normal/...` under `paths.root()`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate
from transformers import LlamaForCausalLM

from lorasae.core import cpu_numerics, grok_paths, paths
from lorasae.core.atomic import atomic_write_json, read_output_json
from lorasae.core.config_files import parse_with_config_file
from lorasae.core.errors import PreflightError
from lorasae.grok import figures
from lorasae.grok.experiments import (
    clamp_fn,
    clamp_study,
    differing_latents,
    relative_decoder_norms,
    token_attribution,
)
from lorasae.grok.saes import answer_activations, latent_stats
from lorasae.grok_world.data import grok_source
from lorasae.grok_world.model import accuracy
from lorasae.grok_world.tasks import DIVISIONS
from lorasae.grok_world.train import Curves, GrokTrainConfig, checkpoint_steps, ensure_grok_model
from lorasae.model.hooks import splice
from lorasae.sae import TopKSAE, splice_fn
from lorasae.sae.crosscoder import Crosscoder
from lorasae.sae.registry import load_ours
from lorasae.train.config import TrainSaeConfig
from lorasae.train.result import TrainResult
from lorasae.train.sae_trainer import train_sae

REPO = Path(__file__).resolve().parents[2]  # relative config paths are the repository's configs/


@dataclass
class GrokStudyConfig:
    """The grokking study: featurizing model, SAEs, crosscoder, clamping, figures."""

    train: GrokTrainConfig = field(default_factory=GrokTrainConfig)
    pre_sae_config: str = "configs/grok-pre.json"
    """train_sae.py config file of the SAE on the pre-generalization checkpoint (relative paths: from the
    repository). The study sets its --model (the checkpoint folder), --dataset (the run's task) and --layer."""
    post_sae_config: str = "configs/grok-post.json"
    """train_sae.py config file of the SAE on the final model (--model, --dataset, --layer set as above)."""
    crosscoder_config: str = "configs/grok-crosscoder.json"
    """train_sae.py config file of the crosscoder across both (--models pre final, --dataset, --layer set)."""
    layer: int = 0
    """Decoder layer whose output (at the answer position) the SAEs read and the clamp edits."""
    pre_train_acc: float = 0.99
    """The pre-generalization checkpoint is the first one whose train accuracy reaches this."""
    n_clamp: int = 8
    """Latents clamped (the top ones by post − pre mean activation; as many random ones per seed)."""
    clamp_seeds: int = 3
    """Random-latent runs (one seed each)."""
    clamp_steps: int = 0
    """Steps of continued training from the pre checkpoint; 0 = up to the step where the run grokked."""
    clamp_from_step: int = 0
    """Checkpoint step the clamped continuation starts from; 0 = the pre-generalization checkpoint. A
    later one (mid-transition) is where the post-generalization latents already fire, so the clamp bites."""
    clamp_value: float = 0.0
    """Value the clamped latents are held at (0 = ablation)."""
    clamp_baseline_run: bool = False
    """Also rerun the unclamped continuation (otherwise the run's own curve is the baseline: continuing
    from a checkpoint without a splice reproduces the run exactly)."""
    embedding_points: int = 1500
    """Problems in the t-SNE / UMAP embedding of latent space."""
    threads: int = 1
    """torch CPU threads."""


def _load(folder: Path) -> LlamaForCausalLM:
    return LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def _loaded_files(folder: str | Path) -> list[Path]:
    """What loading a model or SAE folder reads for its numbers: its config (an SAE's `cfg.json`, else the
    model's `config.json`) and weights (`*.safetensors`)."""
    folder = Path(folder)
    config = folder / "cfg.json" if (folder / "cfg.json").is_file() else folder / "config.json"
    return sorted([config, *folder.glob("*.safetensors")])


def train_grok_sae(config: str, models: list[Path], tc: GrokTrainConfig, layer: int) -> TrainResult:
    """train_sae.py's run of `config` on `models` (one: --model; two: a crosscoder's --models), on the
    train problems of the run's task at `layer`: the same entry as `python train_sae.py --config_file`."""
    path = Path(config) if Path(config).is_absolute() or Path(config).exists() else REPO / config
    which = ["--model", str(models[0])] if len(models) == 1 else ["--models", *map(str, models)]
    argv = ["--config_file", str(path), *which, "--dataset", grok_source(tc.task), "--layer", str(layer)]
    return train_sae(parse_with_config_file(TrainSaeConfig, argv))


def _last_position(fn):
    """A splice function applied at the answer position only (the SAEs were trained there)."""
    return lambda h: torch.cat([h[:, :-1], fn(h[:, -1:])], dim=1)


def _spliced_test_acc(model, sae: TopKSAE, layer: int, data) -> float:
    ids, labels = data["test"]
    with splice(model, {layer: _last_position(splice_fn(sae))}):
        return accuracy(model, ids, labels)


def _static_ablation(model, sae: TopKSAE, layer: int, data, runs, value: float) -> dict:
    """Test accuracy of the final model with each run's latents clamped (no further training):
    {"none": …, "targeted": …, "random": [one per seed]}."""
    ids, labels = data["test"]
    out: dict = {"none": accuracy(model, ids, labels), "random": []}
    for r in runs:
        if not r.latents:
            continue
        with splice(model, {layer: clamp_fn(sae, torch.tensor(r.latents), value)}):
            acc = accuracy(model, ids, labels)
        if r.condition == "random":
            out["random"].append(acc)
        else:
            out["targeted"] = acc
    return out


def _embedding(z: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """{method: [n, 2]}: sklearn t-SNE, and UMAP when umap-learn is installed."""
    from sklearn.manifold import TSNE

    out = {"t-SNE": TSNE(n_components=2, init="pca", random_state=seed, perplexity=30).fit_transform(z)}
    try:
        import umap  # type: ignore[import-not-found]

        out["UMAP"] = umap.UMAP(n_components=2, random_state=seed).fit_transform(z)
    except ImportError:
        pass
    return out


def run_study(cfg: GrokStudyConfig, base: Path | None = None) -> dict:
    torch.set_num_threads(cfg.threads)
    if not cpu_numerics.is_pinned(numerics := cpu_numerics.current()):
        print(
            f"[grok] float path not pinned ({numerics['cpu_capability']}, MKL_CBWR={numerics['mkl_cbwr'] or 'unset'}): "
            "these numbers reproduce on this CPU only; `make grok` (eval/grok/run.py) pins one path for every CPU"
        )
    t0 = time.perf_counter()
    tc = cfg.train
    run = tc.run_name
    if not 0 <= cfg.layer < tc.model.n_layers:  # before the model trains (minutes), not after
        raise PreflightError(
            f"--layer {cfg.layer} is out of range: the grokking model has {tc.model.n_layers} decoder "
            f"layer(s) (0 … {tc.model.n_layers - 1}); pass --layer 0 or more --train.model.n_layers."
        )
    final_dir = ensure_grok_model(tc, base)
    out = grok_paths.grok_data_dir(run, base)
    plots = paths.plots_dir(base)
    summary_file, curves_file = out / "train_summary.json", out / "curves.json"
    summary = read_output_json(summary_file)
    curves = Curves(**read_output_json(curves_file))
    steps = checkpoint_steps(run, base)
    states: list[Path] = []  # the checkpoint states read to pick the pre-generalization checkpoint

    def reaches(step: int) -> bool:
        states.append(state := grok_paths.grok_checkpoint_dir(run, step, base) / "state.json")
        return read_output_json(state)["train_acc"] >= cfg.pre_train_acc

    pre_step = next((s for s in steps if reaches(s)), None)
    if pre_step is None:
        raise RuntimeError(f"no checkpoint of {run} reached train accuracy {cfg.pre_train_acc}: train longer")
    pre_dir = grok_paths.grok_checkpoint_dir(run, pre_step, base)
    pre_state = read_output_json(pre_dir / "state.json")
    data = tc.task.datasets()
    all_ids, all_labels = data["all"]
    pre_model, post_model = _load(pre_dir), _load(final_dir)

    # --- SAEs and the crosscoder ---------------------------------------------------------------------
    acts = {
        "pre": answer_activations(pre_model, all_ids, cfg.layer),
        "post": answer_activations(post_model, all_ids, cfg.layer),
    }
    saes: dict[str, TopKSAE] = {}
    sae_rows = []
    folders: dict[str, str] = {}  # what train_sae.py wrote, read back by the experiments
    sae_configs = {"pre": cfg.pre_sae_config, "post": cfg.post_sae_config}
    for which, model, folder in (("pre", pre_model, pre_dir), ("post", post_model, final_dir)):
        trained = train_grok_sae(sae_configs[which], [folder], tc, cfg.layer)
        sae = load_ours(trained.final_dir).eval()  # read back from what train_sae.py wrote
        saes[which] = sae
        with torch.no_grad():
            stats = latent_stats(sae.encode(acts[which]))
            fvu = float(sae(acts[which]).fvu)
        plain = accuracy(model, *data["test"])
        sae_rows.append(
            {
                "sae": which,
                "fvu": fvu,  # over all p² problems (train and test)
                **stats,
                "val_fvu": trained.val_fvu,  # train_sae.py's, on its held-out train problems
                "val_dead_fraction": trained.val_dead_fraction,
                "test_acc": plain,
                "test_acc_spliced": _spliced_test_acc(model, sae, cfg.layer, data),
            }
        )
        folders[which] = str(trained.final_dir)
    # weight decay shrinks the post-generalization residual ~2×: the decoder norms are compared per unit
    # of each source's mean norm (the crosscoder's loss, a sum of FVUs, is scale-free already)
    scales = {which: float(a.norm(dim=1).mean()) for which, a in acts.items()}
    trained = train_grok_sae(cfg.crosscoder_config, [pre_dir, final_dir], tc, cfg.layer)
    folders["crosscoder"] = str(trained.final_dir)
    coder = load_ours(trained.final_dir).eval()
    assert isinstance(coder, Crosscoder)
    with torch.no_grad():
        cc_out = coder([acts["pre"], acts["post"]])
    rel = relative_decoder_norms(coder, [scales["pre"], scales["post"]])
    alive = (cc_out.z > 0).any(0)
    crosscoder_row = {
        "input_scale_pre": scales["pre"],
        "input_scale_post": scales["post"],
        "fvu_pre": float(cc_out.fvu[0]),
        "fvu_post": float(cc_out.fvu[1]),
        "val_fvu": trained.val_fvu,
        **latent_stats(cc_out.z),
        "post_only_latents": int(((rel > 0.9) & alive).sum()),
        "pre_only_latents": int(((rel < 0.1) & alive).sum()),
        "shared_latents": int(((rel >= 0.1) & (rel <= 0.9) & alive).sum()),
    }

    # --- latents that differ, clamping ---------------------------------------------------------------
    post_sae = saes["post"]
    order, score = differing_latents(post_sae, acts["pre"], acts["post"])
    targeted = order[: cfg.n_clamp]
    with torch.no_grad():
        z_post, z_pre = post_sae.encode(acts["post"]), post_sae.encode(acts["pre"])
    fired = (z_post > 0).any(0)
    fired[targeted] = False
    candidates = fired.nonzero().squeeze(1)
    grok_step = summary["test_acc_95_step"] or summary["final_step"]
    from_step = cfg.clamp_from_step or pre_step
    if from_step not in steps:
        raise ValueError(f"--clamp_from_step {from_step}: no checkpoint there (saved: {steps})")
    end_step = from_step + cfg.clamp_steps if cfg.clamp_steps else max(grok_step, from_step + tc.eval_every)
    clamp = clamp_study(
        tc, grok_paths.grok_checkpoint_dir(run, from_step, base), post_sae, cfg.layer, targeted, candidates, end_step, cfg.clamp_seeds, cfg.clamp_value,
        include_baseline=cfg.clamp_baseline_run,
    )  # fmt: skip
    ablation = _static_ablation(post_model, post_sae, cfg.layer, data, clamp, cfg.clamp_value)
    baseline_at_end = next(a for s, a in zip(curves.step, curves.test_acc) if s >= end_step)
    randoms = [r.final_test_acc for r in clamp if r.condition == "random"]
    clamp_row = {
        "from_step": from_step,
        "to_step": end_step,
        "n_latents": cfg.n_clamp,
        "value": cfg.clamp_value,
        "test_acc_no_clamp": baseline_at_end,
        "test_acc_targeted": next(r.final_test_acc for r in clamp if r.condition == "targeted"),
        "test_acc_random_mean": float(np.mean(randoms)),
        "test_acc_random_std": float(np.std(randoms)),
        "test_acc_random": randoms,
        "random_seeds": cfg.clamp_seeds,
        "targeted_latents": [int(i) for i in targeted],
        "final_model_test_acc_clamped": ablation,
    }

    # --- figures (each run record names the files its numbers come from) ------------------------------
    p = tc.task.prime
    show = [int(i) for i in order[:4]]
    acts_files = [*states, *_loaded_files(pre_dir), *_loaded_files(final_dir)]
    post_files = [*acts_files, *_loaded_files(folders["post"])]
    from_dir = grok_paths.grok_checkpoint_dir(run, from_step, base)
    from_files = [*_loaded_files(from_dir), from_dir / "optimizer.pt", from_dir / "state.json"]
    marks = {"pre checkpoint": pre_step, "test acc > 0.95": grok_step}
    figs = [
        figures.plot_accuracy(curves, run, plots, marks, [curves_file, summary_file, *states]),
        figures.plot_relative_norms(rel, run, plots, [*acts_files, *_loaded_files(folders["crosscoder"])]),
        figures.plot_clamp(clamp, curves, run, plots, [curves_file, summary_file, *post_files, *from_files]),
    ]
    if tc.task.task not in DIVISIONS:  # the full p × p grid (the divisions have no b = 0 column)
        figs.append(figures.plot_latent_grid(z_pre, z_post, show, p, run, plots, post_files))
    attr = token_attribution(post_model, post_sae, all_ids, cfg.layer, torch.tensor(show))
    figs.append(figures.plot_attribution(attr, all_ids, show, p, run, plots, post_files))
    pick = torch.randperm(len(all_ids), generator=torch.Generator().manual_seed(0))[: cfg.embedding_points]
    with torch.no_grad():
        codes = {
            "pre (SAE on pre)": saes["pre"].encode(acts["pre"][pick]),
            "post (SAE on post)": z_post[pick],
        }
    embedded = {label: _embedding(z.numpy(), 0) for label, z in codes.items()}
    embedded_files = [*post_files, *_loaded_files(folders["pre"])]
    for method in embedded["post (SAE on post)"]:
        points = {label: e[method] for label, e in embedded.items()}
        figs.append(
            figures.plot_embedding(points, all_labels[pick].numpy(), method, run, plots, embedded_files)
        )

    study = {
        "run": run,
        "train": {
            **summary,
            "pre_step": pre_step,
            "pre_train_acc": pre_state["train_acc"],
            "pre_test_acc": pre_state["test_acc"],
        },
        "saes": sae_rows,
        "crosscoder": crosscoder_row,
        "differing_latents": [{"latent": int(i), "score": float(score[i])} for i in order[:10]],
        "clamp": clamp_row,
        "clamp_runs": [r.to_dict() for r in clamp],
        "sae_configs": {
            "pre": cfg.pre_sae_config,
            "post": cfg.post_sae_config,
            "crosscoder": cfg.crosscoder_config,
        },
        "sae_folders": folders,
        "figures": [str(f) for f in figs],
        "numerics": cpu_numerics.current(),  # the float path: the numbers match where this matches
        "seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_json(out / "study.json", study)
    print(tabulate([[k, v] for k, v in study["train"].items() if k != "config"], tablefmt="github"))
    print(tabulate(sae_rows, headers="keys", floatfmt=".3f", tablefmt="github"))
    print(tabulate([crosscoder_row], headers="keys", floatfmt=".3f", tablefmt="github"))
    print(
        tabulate(
            [{k: v for k, v in clamp_row.items() if not isinstance(v, list)}],
            headers="keys",
            floatfmt=".3f",
            tablefmt="github",
        )
    )
    print(f"[grok] study written to {out / 'study.json'} in {study['seconds']:.0f} s")
    return study
