"""No import cycle between hubtfx modules, read from the source with `ast` (nothing is imported).

Every import statement counts, also those inside functions: a lazy import only postpones a cycle to the first call
(`pipeline/cli.py` and `kubeflow/cli.py` imported each other that way). Importing `a.b.c` also runs the package
`__init__` of `a.b` and `a`, so those count as imported too, except the importer's own parent packages, which
always run before it.
"""
import ast
import os
from typing import Dict, List, Optional, Set

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _top_level_folders() -> List[str]:
    """setup.py's TOP_LEVEL_FOLDERS: the folders that install as hubtfx.<folder>."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        for node in ast.parse(f.read()).body:
            if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["TOP_LEVEL_FOLDERS"]:
                return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py no longer defines TOP_LEVEL_FOLDERS")


def hubtfx_sources() -> Dict[str, str]:
    """Module name -> file, for every .py file that installs under hubtfx (packages by their __init__.py)."""
    modules = {}
    for top in _top_level_folders():
        for folder, subfolders, files in os.walk(os.path.join(REPO, top)):
            subfolders[:] = [d for d in subfolders if d != "__pycache__"]
            package = "hubtfx." + os.path.relpath(folder, REPO).replace(os.sep, ".")
            for name in files:
                if name.endswith(".py"):
                    modules[package if name == "__init__.py" else f"{package}.{name[:-3]}"] = \
                        os.path.join(folder, name)
    return modules


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _with_parent_packages(module: str, importer: str, known: Set[str]) -> Set[str]:
    parts = module.split(".")
    chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    own_parents = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)}
    return {name for name in chain - own_parents if name in known and name != importer}


def import_graph(modules: Dict[str, str]) -> Dict[str, Set[str]]:
    """Module -> the hubtfx modules it imports anywhere in its source."""
    known = set(modules)
    graph = {}
    for importer, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        is_package = path.endswith("__init__.py")
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, importer, is_package)
                # `from package import module` imports the module; `from module import name` the module.
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("hubtfx."):
                    targets |= _with_parent_packages(name, importer, known)
        graph[importer] = targets
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle as [a, b, ..., a], or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(module: str) -> Optional[List[str]]:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_no_import_cycle_between_hubtfx_modules():
    cycle = find_cycle(import_graph(hubtfx_sources()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_sees_lazy_relative_and_package_imports(tmp_path):
    graph = import_graph(hubtfx_sources())
    # Imported inside build_parser, not at the top of the module.
    assert "hubtfx.kubeflow.cli" in graph["hubtfx.pipeline.cli.commands"]
    # `from hubtfx.pipeline.cli import flags` imports the module flags and runs the package hubtfx.pipeline.cli.
    assert {"hubtfx.pipeline.cli.flags", "hubtfx.pipeline.cli"} <= graph["hubtfx.kubeflow.cli"]
    assert "hubtfx.pipeline" not in graph["hubtfx.pipeline.cli.flags"]  # its own parent package
    lazy = tmp_path / "b.py"
    lazy.write_text("def f():\n    from . import a\n")
    (tmp_path / "a.py").write_text("from hubtfx.x import b\n")
    (tmp_path / "__init__.py").write_text("")
    sources = {"hubtfx.x": str(tmp_path / "__init__.py"), "hubtfx.x.a": str(tmp_path / "a.py"),
               "hubtfx.x.b": str(lazy)}
    assert find_cycle(import_graph(sources)) in (["hubtfx.x.a", "hubtfx.x.b", "hubtfx.x.a"],
                                                 ["hubtfx.x.b", "hubtfx.x.a", "hubtfx.x.b"])
