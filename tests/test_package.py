"""Package hygiene: every module imports, no import cycles, no imports inside functions, errors in errors.py.

The rules come from the design notes: imports inside functions hide cycles and make import cost
unpredictable, so the library (everything but ``speechkit/cli``, whose handlers import lazily to
keep ``speechkit --help`` fast) imports at module level only. The checks read the source with
``ast``, so they see every import, including ones on paths a test never runs.
"""

import ast
import importlib
import os
import re

import pytest

import speechkit

PACKAGE_DIR = os.path.dirname(os.path.abspath(speechkit.__file__))
REPO_ROOT = os.path.dirname(PACKAGE_DIR)
LAZY_IMPORTS_ALLOWED = ("speechkit.cli",)


def _module_name(path):
    rel = os.path.relpath(path, REPO_ROOT)[:-len(".py")].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _sources():
    """{module name: (path, parsed tree)} for every module of the package."""
    modules = {}
    for root, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    modules[_module_name(path)] = (path, ast.parse(f.read(), filename=path))
    return modules


SOURCES = _sources()


def _is_package(module):
    return SOURCES[module][0].endswith("__init__.py")


def _resolve(module, node):
    """The speechkit modules an import statement of ``module`` names (a ``from`` target may be a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "speechkit"]
    if node.level:
        base = module.split(".")
        base = base[:len(base) - node.level + (1 if _is_package(module) else 0)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "speechkit":
        return []
    named = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in SOURCES]
    return named or [target]


def _walk_with_scope(tree):
    """Yield (node, enclosing function or class node or None) for every node of a module."""
    stack = [(tree, None)]
    while stack:
        node, scope = stack.pop()
        yield node, scope
        inner = node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)) else scope
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def _import_graph():
    """{module: the speechkit modules it imports}, wherever the import statement stands.

    An import inside a function still makes the two modules depend on each other; it only hides
    the cycle from the interpreter until the function runs.
    """
    graph = {}
    for module, (_, tree) in SOURCES.items():
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets.update(t for t in _resolve(module, node) if t in SOURCES and t != module)
        graph[module] = targets
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _ancestors(module):
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_the_package_has_the_modules_the_checks_read():
    assert {"speechkit.audio", "speechkit.asr.beam", "speechkit.asr.lm", "speechkit.cli"} <= set(SOURCES)


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m != "speechkit.__main__"))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_no_import_cycles():
    graph = _import_graph()
    # A package's own __init__ importing its submodules is how packages work, not a cycle.
    graph = {m: {t for t in targets if t not in _ancestors(m)} for m, targets in graph.items()}
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_imports_inside_functions_outside_the_cli():
    found = []
    for module, (path, tree) in sorted(SOURCES.items()):
        if module.startswith(LAZY_IMPORTS_ALLOWED):
            continue
        for node, scope in _walk_with_scope(tree):
            if scope is not None and isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(f"{os.path.relpath(path, REPO_ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_the_import_scan_sees_imports_inside_functions():
    tree = ast.parse("import os\ndef f():\n    import json\nclass C:\n    def g(self):\n        from a import b\n")
    inside = [node.lineno for node, scope in _walk_with_scope(tree)
              if scope is not None and isinstance(node, (ast.Import, ast.ImportFrom))]
    assert sorted(inside) == [3, 6]


def test_exception_classes_live_in_errors_py():
    found = []
    for module, (path, tree) in sorted(SOURCES.items()):
        if module == "speechkit.errors":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).split(".")[-1] for b in node.bases]
                if any(b.endswith(("Error", "Exception", "Warning")) for b in bases):
                    found.append(f"{os.path.relpath(path, REPO_ROOT)}:{node.lineno}: class {node.name}")
    assert found == []


def test_cited_test_files_exist():
    missing = []
    for module, (path, _) in sorted(SOURCES.items()):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for cited in sorted(set(re.findall(r"tests/test_\w+\.py", text))):
            if not os.path.isfile(os.path.join(REPO_ROOT, cited)):
                missing.append(f"{os.path.relpath(path, REPO_ROOT)} cites {cited}")
    assert missing == []
