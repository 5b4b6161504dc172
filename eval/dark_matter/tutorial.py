"""A short tour of the SAEInfo API (the original's sae_info_object_tutorial.py, for any SAE source).

python eval/dark_matter/tutorial.py --model tiny --sae saved_saes/tiny/normal/expansion_8_L0_4/model.layers.1
"""

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lorasae.core.cli import CommonArgs, field, parse, parse_count  # noqa: E402
from lorasae.core.errors import main_guard  # noqa: E402


@dataclass
class TutorialArgs(CommonArgs):
    """Build (or load from the cache) one SAEInfo and print what it holds."""

    sae: str | None = None
    """SAE folder or release/sae_id. Default: the model's default SAE."""
    num_tokens: int = field(default=20_000, type=parse_count)
    """Tokens in the SAEInfo."""


def tour(args: TutorialArgs) -> None:
    from lorasae.darkmatter import analyze_linear, get_sae_info, split_error
    from lorasae.darkmatter.load import _load_model_and_sae, analysis_ctx_len
    from lorasae.darkmatter.tokens import analysis_region, sae_stream_use
    from lorasae.store import find_sae

    source = args.sae or find_sae(args.model_name).source
    # 1. the record: built once on num_tokens tokens the SAE never read (after its validation and training
    #    chunks, from its cfg.json), then read from the cache
    device = args.device or "cpu"
    loaded = _load_model_and_sae(args.model_name, source, device)
    ctx = analysis_ctx_len(loaded[0])
    uses = [u for u in [sae_stream_use(source)] if u is not None]
    region = analysis_region(uses, ctx, -(-args.num_tokens // ctx), loaded[1].bos_token_id is not None)
    print(f"tokens: {region.describe()}")
    info = get_sae_info(
        args.model_name, source, args.num_tokens, args.dataset, device, loaded=loaded, start=region.start
    )
    print(f"{len(info)} tokens, d = {info.x.shape[1]}, {info.d_sae} latents; meta: {info.meta}")
    # 2. per-token quantities are tensors over the analysed tokens
    print(
        f"FVU {info.fvu:.3f}; mean L0 {info.l0.double().mean():.1f}; mean ||x|| {info.x_norm.mean():.2f}; "
        f"mean ||e|| {info.error_norm.mean():.2f}; mean next-token loss {info.loss.nanmean():.3f}"
    )
    freq = info.latent_frequency
    print(
        f"latents that never fire: {int((freq == 0).sum())}; the most frequent fires on {freq.max():.1%} of tokens"
    )
    print(
        "dense latents of the first 3 tokens:",
        info.dense_latents(0, 3).count_nonzero(dim=1).tolist(),
        "active",
    )
    # 3. the linear prediction of the error, and the split of e into linear + nonlinear parts
    report, lin = analyze_linear(info, train_fraction=0.5)
    print(
        f"vector R² {report.vector_r2:.3f}, norm R² {report.norm_r2:.3f}, "
        f"linear FVU {report.linear_fvu:.3f}, nonlinear FVU {report.nonlinear_fvu:.3f}"
    )
    parts = split_error(info.x, info.error, lin)
    print(
        "linear + nonlinear == error:",
        bool(((parts.linear + parts.nonlinear) - info.error).abs().max() < 1e-5),
    )
    # 4. any subset of tokens is again an SAEInfo (e.g. the tokens with the 1% largest errors)
    worst = info.subset(info.error_norm >= info.error_norm.quantile(0.99))
    print(
        f"the 1% worst tokens: FVU {worst.fvu:.3f}, their most common token ids {worst.token_ids.bincount().topk(3).indices.tolist()}"
    )


@main_guard
def cli(argv: list[str]) -> None:
    """The command line behind the error boundary (`lorasae.core.errors`)."""
    tour(parse(TutorialArgs, argv))


if __name__ == "__main__":
    sys.exit(cli())
