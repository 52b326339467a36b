"""The layers point one way and no module imports itself round a circle (README "Layers").

Reads every product module's imports with ``ast`` (imports inside functions included: a lazy import is still a
dependency), maps the folders to the installed names, and checks each import against the layer order below.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"rlpost": "rlpost", "actors": "rlpost.actors", "rewards": "rlpost.rewards", "curation": "rlpost.curation"}

# Top to bottom: a module may import from its own layer's package and from any layer below it, never above.
# Siblings on one line (separated by " | ") may not import each other.
LAYERS = [
    "rlpost.cli",
    "rlpost.apps",
    "rlpost.loop",
    "rlpost.actors",
    "rlpost.storage",
    "rlpost.rl",
    "rlpost.judge",
    "rlpost.rewards | rlpost.curation",
    "rlpost.policy",
    "rlpost.scenarios",
    "rlpost.domain",
    "rlpost.common",
]


def product_modules() -> dict[str, Path]:
    """Installed dotted name -> source file, for every module of the distribution."""
    out = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The product modules ``path`` imports (``from a import b`` counts as a.b when a.b is a module)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def layer_of(module: str) -> tuple[int, str] | None:
    for rank, line in enumerate(LAYERS):
        for package in (p.strip() for p in line.split("|")):
            if module == package or module.startswith(package + "."):
                return rank, package
    return None


def graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {m: imports_of(p, m, set(modules)) for m, p in modules.items()}


def test_every_module_has_a_layer():
    loose = sorted(m for m in product_modules() if m != "rlpost" and layer_of(m) is None)
    assert not loose, f"modules outside every layer (add them to a layer package): {loose}"


def test_imports_point_down():
    bad = []
    for module, deps in graph().items():
        here = layer_of(module)
        for dep in deps:
            there = layer_of(dep)
            if here is None or there is None:
                continue
            if there[0] < here[0] or (there[0] == here[0] and there[1] != here[1]):
                bad.append(f"{module} (layer {here[1]}) imports {dep} (layer {there[1]})")
    assert not bad, "imports against the layer order:\n  " + "\n  ".join(sorted(bad))


def test_no_import_cycles():
    g = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in g:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


# Ray stays in the actors layer (docs/design.md §0.2 rule 1), plus the judge backend's client, which finds the judge
# server actor by name from a reward worker process.
RAY_ALLOWED = ("rlpost.actors", "rlpost.judge.critic")


def test_ray_only_in_the_actors_layer():
    users = []
    for module, path in product_modules().items():
        tree = ast.parse(path.read_text(), str(path))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level]
        if any(name == "ray" or name.startswith("ray.") for name in names) and not module.startswith(RAY_ALLOWED):
            users.append(module)
    assert not users, f"modules importing ray outside {RAY_ALLOWED}: {sorted(users)}"


def test_the_checker_sees_a_violation():
    """The checker itself works: an upward import is found in a module written for the test."""
    fake = ROOT / "rlpost" / "domain" / "_layer_probe.py"
    fake.write_text("from rlpost.loop.train import train\n")
    try:
        deps = imports_of(fake, "rlpost.domain._layer_probe", set(product_modules()))
        assert "rlpost.loop.train" in deps and layer_of("rlpost.loop.train")[0] < layer_of("rlpost.domain")[0]
    finally:
        fake.unlink()
