"""The packages import downwards only, and no modules import each other in a circle.

Layers, bottom first: hw (configuration, ISA, generic gateware helpers in hw/lib.py, the
generators), sw (program and memory-image formats, the executor protocol, errors, the golden
model), compiler, sim, boards, llmaccel (the command line). Imports inside functions count:
an import deferred to call time is still a dependency.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("hw", "sw", "compiler", "sim", "boards", "llmaccel")


def _modules():
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def _imports(name, path):
    """Modules ``name`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - node.level + 1]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            # `from pkg import module` names a module too
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


MODULES = dict(_modules())


def _graph():
    g = {}
    for name, path in MODULES.items():
        g[name] = sorted(m for m in _imports(name, path) if m in MODULES and m != name)
    return g


def test_no_import_runs_back_up():
    bad = []
    for name, deps in _graph().items():
        lo = LAYERS.index(name.split(".")[0])
        bad += [f"{name} -> {d}" for d in deps if LAYERS.index(d.split(".")[0]) > lo]
    assert not bad, "imports that run back up: " + ", ".join(bad)


def test_no_import_circle():
    g = _graph()
    # a package's __init__ re-exporting its modules is not a dependency of those modules
    # on the package: only edges from a module to a module that is not its own package
    g = {n: [d for d in ds if not n.startswith(d + ".")] for n, ds in g.items()}
    state, stack, circles = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in g[n]:
            if state.get(d) == 1:
                circles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2
    for n in g:
        if n not in state:
            visit(n)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_is_a_package(layer):
    assert (ROOT / layer / "__init__.py").exists()
