"""The package is laid out by layer: nothing imports upward, and no import circle, among modules or packages.

Read with `ast`, not by importing: every `import` / `from … import` of a `lorasae` module counts, at the top
of a module, inside a function (a lazy import hides a cycle, it does not break it) or under
`if TYPE_CHECKING:` (a type-only circle is still a circle between the two modules' meanings). A parent
package is not an edge (importing `lorasae.sae.io` runs `lorasae/sae/__init__.py`, which is how packages
work, not a cycle of ours).

`LAYERS` is the architecture, bottom up: a module may import its own layer and those below it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "lorasae"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("core",)),
    ("built-in worlds", ("world", "grok_world")),
    ("model and dictionaries", ("model", "kl", "sae")),
    ("training and outputs", ("train", "lora", "store", "results", "plotting")),
    (
        "evals",
        (
            "evals",
            "saebench",
            "steering",
            "lmeval",
            "darkmatter",
            "dictcompare",
            "interp",
            "dashboard",
            "grok",
            "sweep",
            "scale",
        ),
    ),
    ("demo", ("demo",)),
]
"""Bottom up. A package named here is `lorasae.<name>` with everything under it."""


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]] = LAYERS) -> int | None:
    """Index in `layers` of the package holding `module` (`pkg.<package>...`); None for the root `__init__`
    and for a module no layer names."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    for index, (_, packages) in enumerate(layers):
        if parts[1] in packages:
            return index
    return None


def upward_imports(
    graph: dict[str, set[str]], layers: list[tuple[str, tuple[str, ...]]] = LAYERS
) -> list[str]:
    """Each import of a higher layer, as `a -> b (layer of a imports layer of b)`."""
    found = []
    for module in sorted(graph):
        low = layer_of(module, layers)
        for target in sorted(graph[module]):
            high = layer_of(target, layers)
            if low is not None and high is not None and high > low:
                found.append(f"{module} -> {target} ({layers[low][0]} imports {layers[high][0]})")
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same edges between top-level packages (`pkg.sae.io` -> `pkg.sae`), self-edges dropped."""

    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(top(module), set()).update(top(t) for t in targets if top(t) != top(module))
    return packages


def _module_names(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every .py under `root` (a package folder named like the package)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    modules = _module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {t for t in targets if t in modules and t != name and t not in parents}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules that has one (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_within(graph, set(group)) for group in groups]


def _cycle_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A path start → … → start inside one strongly connected group (breadth first, so a short one)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not strongly connected")


def test_every_module_of_lorasae_has_a_layer():
    graph = import_graph(PACKAGE_ROOT)
    homeless = sorted(m for m in graph if m != "lorasae" and layer_of(m) is None)
    assert homeless == [], f"modules in no layer (add their package to LAYERS in {__file__}): {homeless}"


def test_no_module_of_lorasae_imports_a_higher_layer():
    upward = upward_imports(import_graph(PACKAGE_ROOT))
    assert upward == [], "upward imports:\n" + "\n".join(upward)


def test_no_import_cycle_between_packages_of_lorasae():
    cycles = find_cycles(package_graph(import_graph(PACKAGE_ROOT)))
    assert cycles == [], "package cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_import_cycle_in_lorasae():
    graph = import_graph(PACKAGE_ROOT)
    assert {"lorasae.sae.io", "lorasae.sae.topk", "lorasae.sae.config", "lorasae.core.errors"} <= set(graph)
    assert "lorasae.sae.config" in graph["lorasae.sae.topk"]  # the walker sees the package's own imports
    cycles = find_cycles(graph)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_walker_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import f\n")
    (pkg / "a.py").write_text("from pkg.sub import b\n\ndef f():\n    return b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def g():\n    from .. import c\n    return c\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg import d\n\n"
        "def h():\n    import pkg.a\n"
    )
    (pkg / "d.py").write_text("from . import c\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a", "pkg.d"}  # the TYPE_CHECKING import of d is an edge too
    assert graph["pkg"] == {"pkg.a"} and graph["pkg.d"] == {"pkg.c"}
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]  # one cycle per group
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg import d\n"
    )
    assert find_cycles(import_graph(pkg)) == [["pkg.c", "pkg.d", "pkg.c"]]  # a type-only circle
    (pkg / "c.py").write_text("def h():\n    return 1\n")
    assert find_cycles(import_graph(pkg)) == []


def test_an_import_of_a_higher_layer_is_named_with_both_layers(tmp_path):
    pkg = tmp_path / "pkg"
    for sub in ("low", "high"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "high" / "h.py").write_text("from pkg.low import l\n")
    (pkg / "low" / "l.py").write_text("def f():\n    from pkg.high.h import g\n")
    layers = [("bottom", ("low",)), ("top", ("high",))]
    graph = import_graph(pkg)
    assert upward_imports(graph, layers) == ["pkg.low.l -> pkg.high.h (bottom imports top)"]
    assert find_cycles(package_graph(graph)) == [["pkg.high", "pkg.low", "pkg.high"]]
    (pkg / "low" / "l.py").write_text("def f():\n    return 1\n")
    graph = import_graph(pkg)
    assert upward_imports(graph, layers) == [] and find_cycles(package_graph(graph)) == []


def test_root_utils_reexports_lorasae_helpers_and_the_root_scripts_take_theirs_from_it():
    import importlib.util

    repo = PACKAGE_ROOT.parent
    spec = importlib.util.spec_from_file_location("root_utils", repo / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    for name in utils.__all__:  # no logic of its own: each name is lorasae's object
        assert getattr(utils, name).__module__.startswith("lorasae."), name
    for script, wanted in {
        "train_sae.py": {"main_guard", "parse_with_config_file"},
        "train_lora.py": {"main_guard", "parse"},
    }.items():
        tree = ast.parse((repo / script).read_text(encoding="utf-8"))
        from_utils = {
            a.name
            for n in _imports(tree)
            if isinstance(n, ast.ImportFrom) and n.module == "utils"
            for a in n.names
        }
        assert wanted <= from_utils <= set(utils.__all__), script
