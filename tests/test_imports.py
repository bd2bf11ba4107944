"""No import circle anywhere in ``sklearn_winfair``, function-local imports included.

The check reads every module's source with :mod:`ast` (nothing is imported),
resolves relative imports, and looks for circles in the graph "module A
imports module B" with a depth-first search (Tarjan's strongly connected
components: every component of two or more modules, or a module importing
itself, is a circle). Imports inside functions count: they hide a circle
from the interpreter at import time, not from the reader.

Edges: ``from .x import y`` and ``import pkg.x`` point at module ``x``;
``from . import y`` points at submodule ``y`` when ``y`` is one, else at the
package's ``__init__``. A submodule's implicit import of its parent
package's ``__init__`` is not an edge: parents are always initialized before
their children, and counting it would make every re-exporting ``__init__`` a
circle.

Run it over another tree: ``python tests/test_imports.py PATH/TO/sklearn_winfair``.
"""

import ast
import pathlib
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "sklearn_winfair"


def _module_names(package_dir):
    """Map each dotted module name under ``package_dir`` to its file."""
    package_dir = pathlib.Path(package_dir)
    top = package_dir.name
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((top, *parts))] = path
    return modules


def _resolve(module, is_package, level, name):
    """Absolute dotted name of ``from <level dots><name> import ...`` in ``module``."""
    if level == 0:
        return name
    base = module.split(".")
    # a package's own __init__ is its level-1 anchor; a plain module's is its parent
    drop = level - 1 if is_package else level
    if drop >= len(base):
        raise ValueError(f"relative import beyond the top package in {module!r}")
    anchor = base[: len(base) - drop]
    return ".".join(anchor + ([name] if name else []))


def import_graph(package_dir):
    """Return ``{module: set of modules of the package it imports}``.

    Parameters
    ----------
    package_dir : path-like
        Folder of the top package (holding its ``__init__.py``).

    Returns
    -------
    graph : dict of str to set of str
    """
    modules = _module_names(package_dir)
    graph = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets.add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        edges = set()
        for target in targets:
            # ``import a.b.c`` names a.b.c; keep the longest known module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target:
                edges.add(target)
        graph[module] = edges
    return graph


def find_cycles(graph):
    """Return every import circle of ``graph``, each as a sorted list of modules.

    Tarjan's depth-first search for strongly connected components; a
    component is a circle when it holds two or more modules or a module
    that imports itself.

    Examples
    --------
    >>> find_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    [['a', 'b']]
    >>> find_cycles({"a": {"b"}, "b": set()})
    []
    """
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(component) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_circle_in_the_package():
    """Every module of sklearn_winfair, harness included: no circle."""
    graph = import_graph(PACKAGE_DIR)
    assert "sklearn_winfair.reproduction._report" in graph  # the walk saw it
    assert find_cycles(graph) == []


def _write_package(tmp_path, files):
    pkg = tmp_path / "pkg"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return pkg


def test_a_constructed_circle_behind_a_function_local_import_is_found(tmp_path):
    """The check fails on a circle that only a function-local import closes."""
    pkg = _write_package(tmp_path, {
        "__init__.py": "from ._a import f\n",
        "_a.py": "from ._b import g\n\ndef f():\n    return g()\n",
        "_b.py": "def g():\n    from ._a import f\n    return f\n",
        "_c.py": "from . import _a\n",
    })
    assert find_cycles(import_graph(pkg)) == [["pkg._a", "pkg._b"]]


def test_relative_imports_resolve_across_subpackages(tmp_path):
    """``from .. import``, ``from ..sub.m import`` and ``from . import m`` resolve."""
    pkg = _write_package(tmp_path, {
        "__init__.py": "from .sub import h\n",
        "_core.py": "import numpy\n",
        "sub/__init__.py": "from . import _m\nfrom ._m import h\n",
        "sub/_m.py": "from .._core import numpy\nfrom .. import _core\n"
                     "import pkg.sub._n\n\ndef h():\n    from ..sub import _n\n",
        "sub/_n.py": "from ._m import h\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg"] == {"pkg.sub"}
    assert graph["pkg.sub"] == {"pkg.sub._m"}
    assert graph["pkg.sub._m"] == {"pkg._core", "pkg.sub._n"}
    assert find_cycles(graph) == [["pkg.sub._m", "pkg.sub._n"]]


def test_a_module_importing_itself_is_a_circle(tmp_path):
    pkg = _write_package(tmp_path, {"__init__.py": "", "_a.py": "from . import _a\n"})
    assert find_cycles(import_graph(pkg)) == [["pkg._a"]]


def test_relative_import_beyond_the_top_package_is_an_error(tmp_path):
    pkg = _write_package(tmp_path, {"__init__.py": "", "_a.py": "from ... import x\n"})
    with pytest.raises(ValueError, match="relative import beyond the top package"):
        import_graph(pkg)


def test_fairlearn_peers_are_written_only_in_the_method_registry():
    """One registry: no other harness module builds a fairlearn peer."""
    peers = ("fairlearn.reductions", "fairlearn.postprocessing",
             "fairlearn.adversarial")
    users = set()
    for path in (PACKAGE_DIR / "reproduction").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom)
                     else [])
            if any(n and n.startswith(peers) for n in names):
                users.add(path.name)
    assert users == {"_methods.py"}


if __name__ == "__main__":  # pragma: no cover
    target = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE_DIR
    found = find_cycles(import_graph(target))
    for cycle in found:
        print("import circle:", " <-> ".join(cycle))
    print(f"{len(found)} import circle(s) in {target}")
    sys.exit(1 if found else 0)
