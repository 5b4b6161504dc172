"""Planning `train_lora.py`'s runs before any weights load (`plan_runs`): resolve the config against the
model's shape, find the SAEs (our checkpoints, one run each, or `--sae` sources), name each run's outputs
(`make_run_id`, with the settings off their defaults) and tell where each stands (`PlannedRun.state`: the
one "done" rule of `lorasae.store.lora_identity.run_state`, shared with sweep.py and the demo)."""

from __future__ import annotations

from dataclasses import dataclass

from lorasae.core.errors import OutputExistsError
from lorasae.lora.adapters import lora_layer_list, parse_layer_spec
from lorasae.lora.config import TrainLoraConfig
from lorasae.lora.outputs import RunId
from lorasae.model.defaults import default_sae_layer
from lorasae.model.load import ModelShape, check_layer, model_shape
from lorasae.store import SaeRun, check_run_layers, external_run, our_sae_runs, preflight_saes
from lorasae.store.lora_identity import RunState, identity_digest, name_settings, run_identity, run_state


def resolve_runs(cfg: TrainLoraConfig) -> list[SaeRun]:
    """The runs of a resolved config: one over the `--sae` sources, or one per checkpoint of our SAE."""
    layers = parse_layer_spec(cfg.sae_layer) if cfg.sae_layer is not None else None
    if cfg.sae:
        return [external_run(cfg.sae, layers)]
    return our_sae_runs(
        cfg.model_name, layers, cfg.sae_kind, cfg.expansion_factor, cfg.k, cfg.checkpoint_percent,
        architecture=cfg.architecture,
    )  # fmt: skip


@dataclass
class PlannedRun:
    """One LoRA run, settled before any weights load: its resolved config, its SAEs and, when their layers
    are known from the sources (ours always are), its output names."""

    cfg: TrainLoraConfig
    run: SaeRun
    run_id: RunId | None
    sae_layers: list[int] | None = None

    def identity(self) -> dict:
        """Everything that decides this run's numbers (its run record's identity)."""
        assert self.run_id is not None and self.sae_layers is not None
        return run_identity(
            self.cfg, self.run.sources, self.sae_layers, self.run_id.lora_layers, self.run_id.sae_tag
        )

    @property
    def fingerprint(self) -> str:
        """The identity's digest (results.csv's `fingerprint`)."""
        return identity_digest(self.identity())

    def state(self) -> RunState:
        """`lorasae.store.lora_identity.run_state`: the one "done" rule (train_lora.py, sweep.py, the demo)."""
        if self.run_id is None:
            return RunState("new")
        adapter = self.run_id.adapter_path() if self.cfg.save_model else None
        label = f"{self.run_id.sae_tag} rank {self.run_id.rank}"
        return run_state(self.run_id.json_path("CE_increase"), adapter, self.identity, label)

    def status(self) -> str:
        """`done`, `new`, `incomplete`, `damaged` or `different` (`RunState.state`)."""
        return self.state().state

    def done(self) -> bool:
        return self.state().done

    def note(self) -> str:
        """What a rerun of this run says before it starts (empty for a new run)."""
        return self.state().note

    def to_train(self, is_main: bool) -> bool:
        """Whether to train it: a done run is skipped saying so, unless `--overwrite` (or
        `--skip_existing false`); a run under another's name is refused unless `--overwrite`;
        incomplete or damaged runs are redone saying so."""
        state = self.state()
        redo = self.cfg.overwrite or not self.cfg.skip_existing
        if state.state == "different" and not self.cfg.overwrite:
            raise OutputExistsError(state.note)
        if state.done and not redo:
            if is_main:
                print(state.note)
            return False
        if is_main and state.state != "new":
            note = state.note if state.state in ("incomplete", "damaged") else ""
            print(note or f"Redoing {self.run_id.sae_tag} rank {self.run_id.rank} (--overwrite).")
        return True


def make_run_id(cfg: TrainLoraConfig, run: SaeRun, sae_layers: list[int], shape: ModelShape) -> RunId:
    """The names of a run's outputs (`cfg` resolved for `shape`)."""
    lora_layers = lora_layer_list(cfg.LoRA_layers, sae_layers, shape.n_layers)
    tag = run.tag(sae_layers, default_sae_layer(shape.n_layers))
    default = TrainLoraConfig(
        model_type=cfg.model_type, model=cfg.model, num_train_examples=cfg.num_train_examples
    ).resolved(shape.d_model, shape.n_layers, shape.max_positions)
    settings = tuple(sorted(name_settings(cfg, default).items()))
    return RunId(cfg.model_key, tag, tuple(lora_layers), cfg.rank, cfg.num_train_examples, settings)


def plan_runs(
    cfg: TrainLoraConfig, shape: ModelShape | None = None, preflight: bool = True
) -> list[PlannedRun]:
    """Resolve `cfg` against the model's shape (its config only), find its SAEs and name every run's
    outputs, so that bad layers fail and finished runs are skipped before the model loads (`preflight`:
    also check the SAEs' weights)."""
    shape = shape or model_shape(cfg.model_name)
    cfg = cfg.resolved(shape.d_model, shape.n_layers, shape.max_positions)
    for layer in parse_layer_spec(cfg.sae_layer) if cfg.sae_layer is not None else []:
        check_layer(shape, layer)
    planned = []
    for run in resolve_runs(cfg):
        check_run_layers(run, shape)
        layers = run.layers
        run_id = make_run_id(cfg, run, layers, shape) if layers is not None else None
        if preflight:
            preflight_saes(run.sources, shape.d_model)  # NaN weights, wrong width: before anything loads
        planned.append(PlannedRun(cfg, run, run_id, list(layers) if layers is not None else None))
    return planned
