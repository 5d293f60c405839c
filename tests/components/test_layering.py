"""Components are TFX user code and custom components: they must not import the orchestration layer above them
(hubtfx.pipeline, hubtfx.kubeflow). What they share with it lives in hubtfx.components.common."""
import ast
import os

import hubtfx.components

FORBIDDEN = ("hubtfx.pipeline", "hubtfx.kubeflow")
COMPONENTS_DIR = os.path.dirname(hubtfx.components.__file__)


def _imports(path: str, module: str):
    """(line, absolute module name) of every import in the file, function-level and relative ones included."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), filename=path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield node.lineno, base
            for alias in node.names:  # `from hubtfx import pipeline`
                yield node.lineno, f"{base}.{alias.name}"


def _component_modules():
    for folder, _, names in os.walk(COMPONENTS_DIR):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                relative = os.path.splitext(os.path.relpath(path, COMPONENTS_DIR))[0].split(os.sep)
                if relative[-1] == "__init__":
                    relative = relative[:-1]
                yield path, ".".join(["hubtfx.components", *relative])


def test_no_component_imports_the_pipeline_or_kubeflow():
    modules = list(_component_modules())
    assert any(module == "hubtfx.components.trainer.run" for _, module in modules)
    offending = [f"{os.path.relpath(path, COMPONENTS_DIR)}:{line} imports {name}"
                 for path, module in modules for line, name in _imports(path, module)
                 if name in FORBIDDEN or name.startswith(tuple(f"{f}." for f in FORBIDDEN))]
    assert not offending, "\n".join(offending)
