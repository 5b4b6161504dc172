"""`eval/dark_matter/run.py`'s flags and main: which SAEs (ours, trained when missing, or a Gemma Scope
width sweep planned offline), which adapter, how much of each analysis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorasae.core.budget import DEMO_SAE_TOKENS
from lorasae.core.cli import CommonArgs, field, parse_count
from lorasae.core.paths import settings_variant
from lorasae.core.runtime import parse_device
from lorasae.darkmatter.pipeline import DarkMatterSettings, run_dark_matter
from lorasae.darkmatter.plan import PAPER_L0, gemma_scope_width_sweep, our_sae_sources
from lorasae.model.load import model_key
from lorasae.store.adapter_choice import adapter_help
from lorasae.store.adapter_flags import AdapterChoiceArgs
from lorasae.sweep.catalog import GEMMA_SCOPE


@dataclass
class DarkMatterArgs(AdapterChoiceArgs, CommonArgs):
    """Dark Matter of SAEs: SAEInfo records and the paper's analyses over a width sweep and a k sweep,
    plus base vs LoRA-adapted for one SAE. Numbers into data/dark_matter/<model>/, figures into
    plots/dark_matter/<model>/."""

    sae: list[str] = field(default_factory=list)
    """Width-sweep SAEs (folders or release/sae_id), one family at fixed L0. Default: ours at
    --expansions × d_model and k = --k; for Gemma, Gemma Scope at every width ≥ 16k with L0 ≈ --scope_l0."""
    k_sae: list[str] = field(default_factory=list)
    """k-sweep SAEs (one width, several L0). Default: ours at ×--k_expansion for each of --ks; for Gemma,
    every Gemma Scope L0 at width 16k."""
    layer: int | None = None
    """Decoder layer of our SAEs. Default: 1 for the tiny model (the demo's), else the paper's 12."""
    expansions: list[int] = field(default_factory=lambda: [2, 4, 8, 16])
    """Expansion factors of our width sweep."""
    k: int | None = None
    """k of our width sweep. Default: train_sae.py's default for the model."""
    ks: list[int] = field(default_factory=lambda: [2, 8])
    """k values of our k sweep (at ×--k_expansion; the width sweep's k is added)."""
    k_expansion: int = 8
    """Expansion factor of our k sweep."""
    train_missing: bool = True
    """Train any of our SAEs that is missing (train_sae with --sae_tokens tokens)."""
    sae_tokens: int = field(default=DEMO_SAE_TOKENS, type=parse_count)
    """Training tokens of each SAE trained here (the demo's budget)."""
    scope_l0: float = PAPER_L0
    """L0 that the Gemma Scope width sweep holds (the closest at each width)."""
    lora: str = field(
        default="auto",
        help=adapter_help(
            "Adapter for the base-vs-LoRA comparison: 'auto' (the default adapter of --lora_sae, of "
            "--lora_rank and --lora_span), 'none', or a folder."
        ),
    )
    rank: int | None = field(default=16, alias=["--lora_rank"])
    """Rank of the adapter that 'auto' looks for (and trains when missing): --lora_rank (also --rank, as
    in interp and dashboard); None: any rank."""
    train_lora_missing: bool = True
    """With 'auto' and no adapter saved for --lora_sae (one of ours), train one (train_lora.py on all
    layers, --lora_rank, --lora_examples sequences, saved)."""
    lora_examples: int = field(default=160, type=parse_count)
    """Training sequences of an adapter trained here (the demo's)."""
    lora_sae: str | None = None
    """SAE of the base-vs-LoRA comparison. Default: the ×--k_expansion SAE at k (the demo's main SAE), or
    Gemma's default SAE."""
    num_tokens: int = field(default=50_000, type=parse_count)
    """Tokens in each SAEInfo (half fit W*, half score)."""
    pursuit_tokens: int = field(default=2_000, type=parse_count)
    """Held-out tokens that gradient pursuit runs on."""
    ce_chunks: int = 32
    """Chunks of the downstream-CE evaluation (after the SAEInfo's: no token of them fit W*)."""
    split: str = "random"
    """How the SAEInfo's tokens split into the half that fits W* and the held-out half: random (seeded by
    --seed, the original's) or contiguous (the first half fits)."""
    downstream: str | None = None
    """Downstream-CE protocol: clean_prefix_200 (the original's: first 200 positions clean, predictions
    from 200 on scored; needs contexts of ≥ 256) or all_positions. Default: the original's where the
    context allows it, else all_positions."""
    error_sae_steps: int = 500
    """Steps of each SAE trained on an error component (1024 tokens a step)."""
    batch_size: int = 8
    """Sequences per model forward."""
    plan_only: bool = False
    """Print which SAEs would be analysed and stop (offline; useful to plan a Gemma Scope run)."""
    overwrite: bool = False
    """Redo the analysis when its results exist with a run record of the same run (the same SAEs, adapter
    and their weights, model and settings); by default such an identical rerun is skipped, saying so."""


# settings that never name a run's results: the model is their folder; the others change no number
NOT_IN_NAME = frozenset(
    {
        "device",
        "wandb",
        "model_type",
        "model",
        "plan_only",
        "train_missing",
        "train_lora_missing",
        "overwrite",
    }
)
SHORT_NAMES = {
    "num_tokens": "tokens", "pursuit_tokens": "pursuit", "ce_chunks": "ce", "error_sae_steps": "errsteps",
    "sae_tokens": "saetokens", "lora_examples": "loran", "lora_rank": "lorarank", "expansions": "widths",
    "ks": "ks", "k": "k", "k_expansion": "kwidth", "layer": "layer", "seed": "seed", "dataset": "data",
}  # fmt: skip


def _named(settings: dict) -> dict:
    """The settings by the names results carry: the adapter's rank by its flag's, `lora_rank`."""
    return {("lora_rank" if k == "rank" else k): v for k, v in settings.items()}


def result_variant(args: DarkMatterArgs) -> str:
    """The settings of `args` off the script's defaults, as its results' names carry them ('' with the
    defaults: `results.json`, the original names); `--layer` and `--k` count as defaults when they name
    the layer and k the script picks without them."""
    settings = _named(vars(args))
    key = model_key(args.model_name)
    if key in GEMMA_SCOPE:
        defaults = {"layer": GEMMA_SCOPE[key].layer, "k": None}
    else:
        from lorasae.model.defaults import default_k, default_sae_layer
        from lorasae.model.load import model_shape

        shape = model_shape(args.model_name)
        defaults = {"layer": default_sae_layer(shape.n_layers), "k": default_k(shape.d_model)}
    for name, value in defaults.items():
        if settings[name] is not None and settings[name] == value:
            settings[name] = None
    return settings_variant(settings, _named(vars(DarkMatterArgs())), SHORT_NAMES, NOT_IN_NAME)


def _device(args: DarkMatterArgs) -> str:
    return str(parse_device(args.device))


def resolve_sources(args: DarkMatterArgs) -> tuple[list[str], list[str], str | None]:
    """(width-sweep sources, k-sweep sources, the base-vs-LoRA SAE)."""
    key = model_key(args.model_name)
    width, k_sweep = list(args.sae), list(args.k_sae)
    if key in GEMMA_SCOPE:
        from lorasae.store import find_sae
        from lorasae.sweep.catalog import gemma_scope_catalog

        scope = GEMMA_SCOPE[key]
        layer = args.layer if args.layer is not None else scope.layer
        width = width or gemma_scope_width_sweep(key, layer, args.scope_l0)
        k_sweep = k_sweep or [e.source for e in gemma_scope_catalog(key).at(layer, 16384)]
        return width, k_sweep, args.lora_sae or find_sae(key, layer).source
    if not width or not k_sweep:
        from lorasae.model.defaults import default_k, default_sae_layer
        from lorasae.model.load import model_shape

        shape = model_shape(args.model_name)
        layer = args.layer if args.layer is not None else default_sae_layer(shape.n_layers)
        k = args.k if args.k is not None else default_k(shape.d_model)
        ours_w, ours_k = our_sae_sources(
            args.model_name, layer, args.expansions if not width else (), k,
            sorted({k, *args.ks}) if not k_sweep else (), args.k_expansion, args.train_missing,
            args.sae_tokens, _device(args), args.seed, args.dataset,
        )  # fmt: skip
        width, k_sweep = width or ours_w, k_sweep or ours_k
        from lorasae.darkmatter.plan import sae_config
        from lorasae.train.state import planned_dir

        main = sae_config(
            args.model_name, layer, args.k_expansion, k, args.sae_tokens, args.seed, args.dataset
        )
        main_sae = planned_dir(main)  # the demo's main SAE (with the demo's budget)
        return width, k_sweep, args.lora_sae or (str(main_sae) if (main_sae / "cfg.json").exists() else None)
    return width, k_sweep, args.lora_sae


def _paired(adapter: str, sae: str) -> str:
    """`adapter`, refused (one line) when it was trained on other weights than `sae` holds now
    (`store.adapter_records.check_pairing`); a record-less one is accepted with a printed note."""
    from lorasae.store.adapter_records import check_pairing

    if Path(adapter).is_dir():
        note = check_pairing(adapter, [sae])
        if note:
            print(note)
    return adapter


def resolve_adapter(args: DarkMatterArgs, lora_sae: str | None) -> str | None:
    """The adapter of the base-vs-LoRA comparison: given, found (`store.default_adapter`), trained
    here for one of our SAEs when missing, or None (comparison skipped)."""
    if args.lora == "none" or lora_sae is None:
        return None
    if args.lora != "auto":
        return _paired(args.lora, lora_sae)
    from lorasae.store import default_adapter, external_ref

    try:
        ref = external_ref(lora_sae, args.layer)
        found = default_adapter(args.model_name, ref, args.adapter_filter())
        return _paired(str(found), lora_sae)
    except FileNotFoundError as err:
        if not (args.train_lora_missing and Path(lora_sae).exists()):
            print(
                f"dark matter: no adapter for {lora_sae}, base-vs-LoRA skipped ({str(err).splitlines()[0]})"
            )
            return None
    from lorasae.lora.config import TrainLoraConfig
    from lorasae.lora.run import main as train_lora

    train_lora(TrainLoraConfig(
        device=_device(args), model=args.model_name, dataset=args.dataset, seed=args.seed, sae=[lora_sae],
        rank=args.rank or 16, num_train_examples=args.lora_examples, save_model=True, progress=False,
    ))  # fmt: skip
    return str(default_adapter(args.model_name, ref, args.adapter_filter()))


def main(args: DarkMatterArgs) -> dict | None:
    from lorasae.core.errors import PreflightError
    from lorasae.darkmatter.downstream import PROTOCOLS
    from lorasae.darkmatter.linear import SPLITS
    from lorasae.model.load import model_shape
    from lorasae.store import preflight_saes

    if args.split not in SPLITS or args.downstream not in (None, *PROTOCOLS):
        raise PreflightError(
            f"lorasae/darkmatter/cli.py: --split {args.split} / --downstream {args.downstream}: pass --split "
            f"{' or '.join(SPLITS)} and --downstream {' or '.join(PROTOCOLS)} (or leave it out)."
        )
    given = [*args.sae, *args.k_sae, *([args.lora_sae] if args.lora_sae else [])]
    if given:  # width and finite weights before any missing SAE is trained
        preflight_saes(given, model_shape(args.model_name).d_model)
    width, k_sweep, lora_sae = resolve_sources(args)
    adapter = resolve_adapter(args, lora_sae) if not args.plan_only else None
    if not args.plan_only:
        from lorasae.store import adapter_line

        print(adapter_line(adapter, "dark matter"))
    print(
        "width sweep:", *width, "k sweep:", *k_sweep, f"base vs LoRA: {lora_sae} with {args.lora}", sep="\n  "
    )
    if args.plan_only:
        return None
    settings = DarkMatterSettings(
        num_tokens=args.num_tokens, pursuit_tokens=args.pursuit_tokens, ce_chunks=args.ce_chunks,
        error_sae_steps=args.error_sae_steps, dataset=args.dataset, batch_size=args.batch_size, split=args.split,
        downstream=args.downstream,
        device=_device(args), seed=args.seed,
    )  # fmt: skip
    variant = result_variant(args)
    return run_dark_matter(
        args.model_name,
        width,
        k_sweep,
        lora_sae,
        adapter,
        settings,
        variant=variant,
        overwrite=args.overwrite,
    )
