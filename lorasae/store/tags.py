"""What output names say, read back: the inverse of `lorasae/core/paths.py`'s names.

- our SAE tags `expansion_<E>_L0_<k>[__<variant>][-<pct>pct]` (`parse_our_tag`), and any SAE tag in general
  (`parse_sae_tag`: Gemma Scope's `layer_12_width_16k_average_l0_82` too);
- the tag of one LoRA run's SAEs in output paths (`run_tag`): one SAE spliced off the model's default SAE
  layer whose tag does not name its layer gets `layer_<L>__` in front, several SAEs get
  `layers_<a>+<b>__`, so runs on different layers never share output files;
- the tag of an external SAE source (`source_tag`) and the layer a folder name says (`layer_from_path`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lorasae.core.paths import sanitize

VARIANT = r"(?:__(?P<variant>(?!kl-ft)(?:(?!__kl-ft)[A-Za-z0-9._+-])+?))?"
"""The optional `__<variant>` after a tag (`lorasae.train.sae_names.sae_variant`: the weight-affecting
settings off their defaults, e.g. `n-100000_lr-0.001`), before a checkpoint's `-<pct>pct`; never a KL
fine-tune's `__kl-ft` (`paths.name_variant` never ends a variant in `<digits>pct`)."""
OUR_TAG = re.compile(r"^expansion_(?P<e>\d+)_L0_(?P<k>\d+)" + VARIANT + r"(?:-(?P<pct>\d+)pct)?$")
LAYER_DIR = re.compile(r"^(?:model\.)?layers?[._](?P<layer>\d+)$")
ARCH_TAG = re.compile(
    r"^(?:crosscoder_(?:layers_(?P<layers>\d+(?:\+\d+)*)|models_(?P<models>[A-Za-z0-9._+-]+?))_)?"
    r"expansion_(?P<e>\d+)_"
    r"(?:L0_(?P<k>\d+)|relu_l1_(?P<l1>\d[0-9.e+-]*?))" + VARIANT + r"(?:-(?P<pct>\d+)pct)?$"
)
"""Every tag train_sae.py writes (`paths.sae_tag`, `paths.relu_sae_tag`, `paths.crosscoder_tag`), with
its variant."""
_NAMES_LAYER = re.compile(r"(?:^|[^a-z])layers?_(\d+)")  # layers_: a crosscoder's or a joint run's tag


@dataclass(frozen=True)
class OurTag:
    """`expansion_<E>_L0_<k>[__<variant>][-<pct>pct]`: what `paths.sae_tag` and train_sae.py wrote."""

    expansion_factor: int
    k: int
    pct: int | None
    variant: str = ""

    @property
    def family(self) -> str:
        """The final SAE's tag (without the checkpoint suffix)."""
        tag = f"expansion_{self.expansion_factor}_L0_{self.k}"
        return f"{tag}__{self.variant}" if self.variant else tag


def parse_our_tag(tag: str) -> OurTag | None:
    """Our SAE tag's parts, or None for any other name."""
    m = OUR_TAG.match(tag)
    if not m:
        return None
    pct = int(m.group("pct")) if m.group("pct") else None
    return OurTag(int(m.group("e")), int(m.group("k")), pct, m.group("variant") or "")


@dataclass(frozen=True)
class SaeTag:
    """A parsed SAE tag: `expansion_8_L0_64-30pct`, or e.g. `layer_12_width_16k_average_l0_82`."""

    tag: str
    base: str
    checkpoint_pct: float | None = None
    expansion: float | None = None
    l0: float | None = None
    width: int | None = None
    layer: int | None = None


def _num(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def expand_width(value: int, unit: str) -> int:
    """`16k` → 16384, `131k` → 131072, `1m` → 1048576 (Gemma Scope rounds powers of two down to
    thousands); a value that is no such rounding is taken literally (`10k` → 10000)."""
    n = value * {"": 1, "k": 1000, "m": 1000**2}[unit]
    if unit:
        pow2 = 2 ** round(math.log2(n))
        if abs(pow2 - n) <= 0.05 * n:
            return pow2
    return n


def parse_sae_tag(tag: str) -> SaeTag:
    """Parse what can be parsed from an SAE tag; unknown parts stay None."""
    base, pct = tag, None
    m = re.search(r"-(\d+(?:\.\d+)?)pct$", tag)
    if m:
        base, pct = tag[: m.start()], _num(m.group(1))
    expansion = l0 = width = layer = None
    if m := re.search(r"expansion_(\d+(?:\.\d+)?)", base):
        expansion = _num(m.group(1))
    if m := re.search(r"(?:^|_)[Ll]0_(\d+(?:\.\d+)?)", base):
        l0 = _num(m.group(1))
    if m := re.search(r"width_(\d+)([kKmM]?)", base):
        width = expand_width(int(m.group(1)), m.group(2).lower())
    if m := re.search(r"layer_(\d+)", base):
        layer = int(m.group(1))
    return SaeTag(tag, base, pct, expansion, l0, width, layer)


def names_layer(tag: str) -> bool:
    """Whether a tag already says its layer (Gemma Scope's `layer_12/...`, our `layer_2__...`)."""
    return _NAMES_LAYER.search(tag) is not None


def single_sae_tag(tag: str, layer: int | None, default_layer: int | None) -> str:
    """`layer_<L>__<tag>` when one SAE is spliced at a layer other than the default one and its own tag
    does not name its layer (ours: `expansion_8_L0_4`); else `tag`."""
    if default_layer is not None and layer is not None and layer != default_layer and not names_layer(tag):
        return f"layer_{layer}__{tag}"
    return tag


def run_tag(tags: Sequence[str], layers: Sequence[int], default_layer: int | None) -> str:
    """The SAE tag of one LoRA run in output paths (one tag per spliced SAE, in layer order)."""
    if len(tags) == 1:
        return single_sae_tag(tags[0], layers[0] if layers else None, default_layer)
    distinct = list(dict.fromkeys(tags))
    base = distinct[0] if len(distinct) == 1 else f"{distinct[0]}+{len(distinct) - 1}more"
    return f"layers_{'+'.join(str(x) for x in layers)}__{base}"


def source_tag(source: str) -> str:
    """Tag of an SAE source: our folder → `expansion_<E>_L0_<k>[__<variant>][-<pct>pct]` (its parent
    folder, whatever its architecture); another
    local folder → its name (with the parent's when the name is just a layer); a release `release/sae_id`
    → the sanitized string."""
    path = Path(source).expanduser()
    if path.exists():
        path = path.resolve()
        if ARCH_TAG.match(path.parent.name) and path.name.startswith("model.layers."):
            return path.parent.name  # ours, any architecture (a crosscoder's folder: model.layers.<a>+<b>)
        if LAYER_DIR.match(path.name) and path.parent.name:
            if OUR_TAG.match(path.parent.name):
                return path.parent.name
            return sanitize(f"{path.parent.name}--{path.name}")
        return sanitize(path.name)
    return sanitize(source)


def layer_from_path(source: str) -> int | None:
    """`.../model.layers.12` → 12 (our and sparsify's folder names); None otherwise."""
    m = LAYER_DIR.match(Path(source).name)
    return int(m.group("layer")) if m else None


def sae_id_tag(source: str) -> str:
    """The original repository's adapter tag for a sae-lens release: the sae_id with `_` for `/`
    (`layer_12_width_16k_average_l0_82`)."""
    _release, _, sae_id = source.partition("/")
    return sanitize((sae_id or source).replace("/", "_"))
