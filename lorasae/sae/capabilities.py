"""What each consumer of a dictionary needs from it, checked in one place, and the one refusal text.

Two capabilities tell the dictionaries apart for the evals:

- ``splice_site``: ``"resid"`` (an SAE reads and rewrites the residual after its layer: TopK, ReLU,
  BatchTopK, Matryoshka, JumpReLU, sae_lens SAEs, crosscoders) or ``"mlp"`` (a transcoder reads the
  MLP's input and replaces the MLP's output). ``lorasae.sae.splice.splice_fn`` marks a transcoder's
  function and ``lorasae.model.hooks.splice`` hooks the MLP for it, so every CE, the LoRA objective and the
  splice-only evals take any dictionary.
- one layer or several (a crosscoder reads several layers at once).

Each eval suite of the registry (`lorasae.evals`) says which dictionaries it takes in its
``EvalSuite.dictionaries``; ``train_lora`` (the LoRA objective and its CEs) is a consumer outside the
registry that takes any:

- ``"any"`` (train_lora, interp, benchmarks): the dictionary is used only through the splice;
- ``"encoding"`` (dashboards): one layer; it encodes what the dictionary reads (:func:`sae_input_at`, a
  transcoder's MLP input) and reads its decoder rows as what it writes;
- ``"residual"`` (SAE-Bench's eight, steering, Dark Matter, grokking): one layer; it reconstructs or
  edits the residual after the layer, or reads decoder rows as residual directions: no transcoder.

A refusal is :func:`check_consumer`'s one line; `lorasae.evals.capabilities` names the registry's suites
as consumers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from lorasae.core.errors import LorasaeError
from lorasae.model.hooks import MLP, RESID, mlp_io_at, residual_at

ANY, ENCODING, RESIDUAL = "any", "encoding", "residual"
_REASONS = {
    MLP: "it reads the MLP input and writes the MLP output, but this suite reconstructs and edits the "
    "residual after the layer; use a residual SAE here (train_lora, interp, benchmarks and dashboards "
    "take it)",
    "layers": "it reads several layers at once, but this suite takes the dictionary of one layer",
}


class UnsupportedArchitectureError(LorasaeError, ValueError):
    """A suite was given a dictionary it cannot evaluate (the message says why, in one line)."""


def sae_splice_site(sae: object) -> str:
    """``"mlp"`` for a transcoder (its reconstruction replaces the MLP output), else ``"resid"``."""
    site = getattr(sae, "splice_site", RESID)
    return MLP if site == MLP else RESID


def is_multi_layer(sae: object) -> bool:
    """Whether the dictionary reads several layers at once (a crosscoder)."""
    from lorasae.sae.crosscoder import Crosscoder

    return isinstance(sae, Crosscoder)


def architecture_name(sae: object) -> str:
    """Our architecture name of a loaded dictionary (`lorasae.sae.registry`), or ``sae_lens <Class>`` for
    one sae_lens models."""
    from lorasae.sae.registry import SAE_CLASSES

    if getattr(sae, "splice_site", None) == MLP and hasattr(sae, "cfg") and hasattr(sae.cfg, "skip"):
        return "skip_transcoder" if sae.cfg.skip else "transcoder"
    names = {cls: name for name, cls in reversed(SAE_CLASSES.items())}
    if type(sae) in names:
        return names[type(sae)]
    inner = getattr(sae, "sae", None)  # a SaeLensAdapter
    return f"sae_lens {type(inner).__name__}" if inner is not None else type(sae).__name__


@dataclass(frozen=True)
class Consumer:
    """A consumer of a dictionary as a refusal names it (`name`), and what it takes (`takes`: any,
    encoding or residual). Eval suites get theirs from the registry (`lorasae.evals.capabilities.consumer`)."""

    name: str
    takes: str


TRAIN_LORA = Consumer("train_lora", ANY)
"""The LoRA objective and its CEs: a consumer outside the eval registry that takes any dictionary."""


def refusal_reason(consumer: Consumer, sae: object) -> str | None:
    """Why `consumer` cannot take `sae` (None: it can)."""
    if consumer.takes == ANY:
        return None
    if is_multi_layer(sae):
        return _REASONS["layers"]
    if sae_splice_site(sae) == MLP and consumer.takes == RESIDUAL:
        return _REASONS[MLP]
    return None


def check_consumer(consumer: Consumer, sae: object, source: str | None = None) -> None:
    """Raise :class:`UnsupportedArchitectureError` (one line naming the consumer, the architecture and
    why) unless `consumer` can take `sae`."""
    reason = refusal_reason(consumer, sae)
    if reason is not None:
        where = f" ({source})" if source else ""
        raise UnsupportedArchitectureError(
            f"{consumer.name} does not take a {architecture_name(sae)} dictionary{where}: {reason}."
        )


def sae_input_at(sae: object, model: nn.Module, input_ids: Tensor, layer: int, **kwargs: Any) -> Tensor:
    """What the dictionary at `layer` encodes for `input_ids` [B, T]: layer L's MLP input for a
    transcoder, else the residual after layer L ([B, T, d])."""
    if sae_splice_site(sae) == MLP:
        return mlp_io_at(model, input_ids, layer, **kwargs)[0]
    return residual_at(model, input_ids, layer, **kwargs)


__all__ = [
    "ANY",
    "ENCODING",
    "RESIDUAL",
    "TRAIN_LORA",
    "Consumer",
    "UnsupportedArchitectureError",
    "architecture_name",
    "check_consumer",
    "is_multi_layer",
    "refusal_reason",
    "sae_input_at",
    "sae_splice_site",
]
