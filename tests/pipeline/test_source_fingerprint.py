"""The code fingerprints in the Transform's and Trainer's custom_config cover every hubtfx module their user code
imports, so an edit to any of them re-runs the component instead of reusing a cached result."""
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from hubtfx.components.trainer.params import CODE_KEY
from hubtfx.pipeline import pipeline
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule

CONFIG = PipelineConfig()
MODULE = ResolvedModule(path="/m", sha256="abc", image_size=(32, 32))

# Imports the Transform's, then the Trainer's user code as TFX does (by the dotted path the pipeline gives it) and
# writes the source file of every hubtfx module loaded after each step.
_LIST_LOADED = """
import importlib, json, sys
def loaded():
    return {name: module.__file__ for name, module in sys.modules.items()
            if name.split(".")[0] == "hubtfx" and getattr(module, "__file__", None)}
importlib.import_module(sys.argv[2])
transform = loaded()
importlib.import_module(sys.argv[3])
with open(sys.argv[1], "w") as f:
    json.dump({"transform": transform, "trainer": loaded()}, f)
"""


@pytest.fixture(scope="module")
def loaded_by_user_code(tmp_path_factory):
    out = tmp_path_factory.mktemp("loaded") / "loaded.json"
    modules = [path.rpartition(".")[0] for path in (pipeline.PREPROCESSING_FN, pipeline.RUN_FN)]
    result = subprocess.run([sys.executable, "-c", _LIST_LOADED, str(out), *modules], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def _real(paths):
    return {os.path.realpath(p) for p in paths}


@pytest.mark.parametrize("component, code", [("transform", pipeline.TRANSFORM_CODE),
                                             ("trainer", pipeline.TRAINER_CODE)])
def test_every_hubtfx_module_the_user_code_loads_is_fingerprinted(loaded_by_user_code, component, code):
    loaded = loaded_by_user_code[component]
    assert "hubtfx.components.common.feature_keys" in loaded  # not vacuous: shared code is among them
    missing = _real(loaded.values()) - _real(pipeline.user_code_files(*code).values())
    assert not missing, f"{component}'s user code loads files its fingerprint does not hash: {sorted(missing)}"


def test_the_trainer_fingerprint_covers_the_module_contract(loaded_by_user_code):
    """The regression: the contract lived outside the fingerprinted packages, so editing it reused the Trainer."""
    assert "hubtfx.components.common.contract" in loaded_by_user_code["trainer"]
    assert "hubtfx.components.common.contract" in pipeline.user_code_files(*pipeline.TRAINER_CODE)


@pytest.mark.parametrize("code", [pipeline.TRANSFORM_CODE, pipeline.TRAINER_CODE])
def test_an_edit_to_any_fingerprinted_file_changes_the_fingerprint(tmp_path, code):
    files = pipeline.user_code_files(*code)
    copies = {}
    for name, path in files.items():
        copies[name] = str(tmp_path / f"{name}.py")
        shutil.copyfile(path, copies[name])
    unchanged = pipeline.fingerprint_files(copies)
    assert unchanged == pipeline.source_fingerprint(*code), "the copies hash like the installed files"
    for name, path in copies.items():
        original = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(original + b"\n# an edit\n")
        assert pipeline.fingerprint_files(copies) != unchanged, f"editing {name} leaves the fingerprint unchanged"
        with open(path, "wb") as f:
            f.write(original)
    assert pipeline.fingerprint_files(copies) == unchanged


def test_the_components_receive_the_fingerprints_of_their_user_code():
    components = {c.id: c for c in pipeline.create_components(CONFIG, MODULE)}
    transform = json.loads(components["Transform"].exec_properties["custom_config"])
    trainer = json.loads(components["Trainer"].exec_properties["custom_config"])
    assert transform[CODE_KEY] == pipeline.source_fingerprint(*pipeline.TRANSFORM_CODE)
    assert trainer[CODE_KEY] == pipeline.source_fingerprint(*pipeline.TRAINER_CODE)
    assert transform[CODE_KEY] != trainer[CODE_KEY]


def test_imports_are_followed_through_packages_relative_imports_and_function_bodies(tmp_path, monkeypatch):
    """user_code_files reads import statements, not sys.modules: checked on a throwaway hubtfx sub-package."""
    root = tmp_path / "fake"
    (root / "sub").mkdir(parents=True)
    files = {"__init__.py": "", "sub/__init__.py": "", "sub/entry.py": "from . import sibling\n\n\ndef f():\n"
             "    from ..late import thing\n", "sub/sibling.py": "import hubtfx.fake.plain\nimport os\n",
             "late.py": "thing = 1\n", "plain.py": "", "unused.py": ""}
    for name, text in files.items():
        (root / name).write_text(text)
    fake = importlib.machinery.ModuleSpec("hubtfx.fake", None, is_package=True)
    fake.submodule_search_locations = [str(root)]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: fake if name == "hubtfx.fake" else real_find_spec(name, *args))

    found = pipeline.user_code_files("hubtfx.fake.sub.entry")

    assert {name: os.path.relpath(path, root) for name, path in found.items()} == {
        "hubtfx.fake": "__init__.py", "hubtfx.fake.sub": os.path.join("sub", "__init__.py"),
        "hubtfx.fake.sub.entry": os.path.join("sub", "entry.py"),
        "hubtfx.fake.sub.sibling": os.path.join("sub", "sibling.py"),
        "hubtfx.fake.late": "late.py", "hubtfx.fake.plain": "plain.py"}
