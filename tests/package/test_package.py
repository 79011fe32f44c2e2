"""The package's shape: no import circle, every module importable on its
own, the hand-written stub of the compiled core equal to the built module,
no Python function over 80 lines."""

import ast
import pathlib
import subprocess
import sys
import types

import pytest

import rnnkit
from helpers import require_optional
from rnnkit import _core

PACKAGE = pathlib.Path(rnnkit.__file__).parent
MAX_FUNCTION_LINES = 80


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_modules():
    return sorted(PACKAGE.rglob("*.py"))


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    # A package's own __init__ is its level-1 anchor; a module's is its parent.
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph():
    """rnnkit module -> rnnkit modules it imports while being imported
    (module level: imports inside functions run later, on use)."""
    names = {module_name(p): p for p in python_modules()}
    # The compiled core imports nothing of the package: a leaf.
    leaves = {"rnnkit._core"}
    graph = {leaf: [] for leaf in leaves}
    for name, path in names.items():
        is_package = path.name == "__init__.py"
        targets = set()
        tree = ast.parse(path.read_text())
        for node in tree.body:
            stmts = [node] + [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))] \
                if isinstance(node, (ast.If, ast.Try)) else [node]
            for stmt in stmts:
                if isinstance(stmt, ast.Import):
                    targets.update(a.name for a in stmt.names)
                elif isinstance(stmt, ast.ImportFrom):
                    base = _resolve(name, is_package, stmt)
                    for alias in stmt.names:
                        sub = f"{base}.{alias.name}"
                        # "from . import layers" names a module; "from . import isa" a name in it.
                        targets.add(sub if sub in names or sub in leaves else base)
        graph[name] = sorted(t for t in targets if (t in names or t in leaves) and t != name)
    return graph


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert "rnnkit.functional" in graph and "rnnkit.interchange.onnx" in graph
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_layers_no_longer_imports_the_package_or_modules():
    # The circle the issue found: layers <- __init__ (half built) and layers <-> modules.
    graph = import_graph()
    assert "rnnkit" not in graph["rnnkit.layers"]
    assert "rnnkit.modules" not in graph["rnnkit.layers"]
    assert "rnnkit.layers" in graph["rnnkit.modules"]


@pytest.mark.parametrize("name", [module_name(p) for p in python_modules()])
def test_each_module_imports_alone_in_a_fresh_interpreter(name):
    # The torch adapter and its plain-torch math import torch at the top.
    if name in ("rnnkit.torch", "rnnkit._torch_math", "rnnkit._torch_quantized"):
        require_optional("torch")
    code = f"import importlib, sys; importlib.import_module({name!r}); print('ok')"
    env_path = str(PACKAGE.parent)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": env_path})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


# ---- the stub of the compiled core ---------------------------------------------------

def _stub_names(body):
    """Top-level names of a stub body: functions, classes (with their members)
    and annotated variables. Returns {name: members or None}."""
    out = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = None
        elif isinstance(node, ast.ClassDef):
            out[node.name] = {n.name if not isinstance(n, ast.AnnAssign) else n.target.id
                              for n in node.body if isinstance(n, (ast.FunctionDef, ast.AnnAssign))}
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = None
    return out


def _own_names(obj):
    # Names the object defines itself, less Python's and pybind11's plumbing.
    plumbing = {"__doc__", "__module__", "__init__", "__new__", "__dict__", "__weakref__", "__name__",
                "__loader__", "__package__", "__spec__", "__file__", "__builtins__", "__cached__"}
    names = vars(obj).keys()
    return {n for n in names if n not in plumbing and not n.startswith("_pybind11")}


def test_stub_names_every_name_of_the_built_module():
    stub = _stub_names(ast.parse((PACKAGE / "_core.pyi").read_text()).body)
    testing_cls = stub.pop("_Testing")
    assert stub["_testing"] is None
    built = _own_names(_core)
    assert isinstance(_core._testing, types.ModuleType)
    assert set(stub) == built, (f"in the stub only: {sorted(set(stub) - built)}; "
                                f"in the module only: {sorted(built - set(stub))}")
    for name, members in stub.items():
        if members is not None and name != "_Testing":
            assert members == _own_names(getattr(_core, name)), (name, members, _own_names(getattr(_core, name)))
    assert testing_cls == _own_names(_core._testing)


def test_test_hooks_are_not_in_the_core_namespace():
    for name in ("sigmoid", "tanh", "gemm", "fingerprint", "core_round_trip_ns"):
        assert not hasattr(_core, name), name
        assert callable(getattr(_core._testing, name)), name


# ---- function length ----------------------------------------------------------------

def long_functions(path):
    tree = ast.parse(path.read_text())
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


@pytest.mark.parametrize("path", python_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_over_80_lines(path):
    found = long_functions(path)
    if found and path.name == "torch.py" and path.parent == PACKAGE:
        pytest.xfail(f"rnnkit/torch.py is being rewritten separately; over {MAX_FUNCTION_LINES} lines: {found}")
    assert not found, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {found}"
