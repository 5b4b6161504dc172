"""The adapter-choice flags, declared once: which saved LoRA adapter an eval looks up when no adapter folder
is given (`--lora_rank`, `--lora_span`). Eval configs inherit `AdapterChoiceArgs` (as they inherit
`lorasae.core.cli.SaeChoiceArgs`); `adapter_filter` turns the flags into the `AdapterFilter` that the
store's one rule (`adapter_choice.DEFAULT_ADAPTER_RULE`) picks within.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorasae.core.cli import field
from lorasae.store.adapter_choice import AdapterFilter


@dataclass
class AdapterChoiceArgs:
    """Which saved adapter an eval looks up (the default adapter among those that match)."""

    rank: int | None = field(default=None, alias=["--lora_rank"])
    """Rank of the saved adapter to look up: --lora_rank (--rank, train_lora.py's training rank, kept here
    as an alias). Default: any."""

    lora_span: str | None = None
    """Layer span `<a>-<b>` of the saved adapter to look up, e.g. 0-25 (default: any)."""

    def adapter_filter(self, defaults: AdapterFilter = AdapterFilter()) -> AdapterFilter:
        """The flags as the store's filter; a flag not given takes the eval's own wish in `defaults` (e.g.
        the original's span for the Gemma Scope settings), else any."""
        return AdapterFilter(
            rank=self.rank if self.rank is not None else defaults.rank,
            lora_span=self.lora_span if self.lora_span is not None else defaults.lora_span,
            num_examples=defaults.num_examples,
        )


__all__ = ["AdapterChoiceArgs"]
