"""Compiled specs for both targets, built once per session through the real `hubtfx compile` command."""
import json

import pytest
import yaml

from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule

IMAGE = "us-docker.pkg.dev/hubtfx-test/pipelines/hubtfx:1"
CLUSTER_FLAGS = ["--image", IMAGE, "--data-root", "gs://hubtfx-test/flowers", "--output-dir", "gs://hubtfx-test/run",
                 "--gcp-project", "hubtfx-test", "--gcp-region", "europe-west4"]


def compile_with_cli(tmp_path_factory, target: str, filename: str, *flags: str):
    from hubtfx.pipeline.cli.commands import main
    path = str(tmp_path_factory.mktemp(target) / filename)
    assert main(["compile", "--target", target, "--output", path, *CLUSTER_FLAGS, *flags]) == 0
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return path, text, (yaml.safe_load(text) if filename.endswith(".yaml") else json.loads(text))


@pytest.fixture(scope="session")
def vertex_spec(tmp_path_factory, feature_vector_module):
    """(path, text, dict) of a Vertex spec with 2 x L4 on the Trainer and span-based data."""
    return compile_with_cli(tmp_path_factory, "vertex", "pipeline.json", "--trainer-gpu-type", "NVIDIA_L4",
                            "--trainer-gpu-count", "2", "--use-spans", "--cv-folds", "7")


@pytest.fixture(scope="session")
def kubeflow_spec(tmp_path_factory, feature_vector_module):
    """(path, text, dict) of a Kubeflow spec with the default GPU, as YAML."""
    return compile_with_cli(tmp_path_factory, "kubeflow", "pipeline.yaml")


@pytest.fixture(scope="session")
def text_vertex_spec(tmp_path_factory):
    """(path, text, dict) of a Vertex spec of the text pipeline (the bundled text pair)."""
    return compile_with_cli(tmp_path_factory, "vertex", "text.json", "--modality", "text")


@pytest.fixture(scope="session")
def image() -> str:
    return IMAGE


@pytest.fixture
def cluster_config() -> PipelineConfig:
    """A valid cluster config (for checks that need no compile); `cluster_module` is its resolved module."""
    return PipelineConfig(image=IMAGE, data_root="gs://hubtfx-test/flowers", output_dir="gs://hubtfx-test/run",
                          gcp_project="hubtfx-test")


@pytest.fixture
def cluster_module() -> ResolvedModule:
    """A module as the cluster's steps would read it from the image, without building one."""
    return ResolvedModule(path="/hubtfx/modules/m", sha256="0" * 64, image_size=(224, 224))
