"""Shared fixtures. TF_USE_LEGACY_KERAS must be set before TensorFlow is imported anywhere."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


@pytest.fixture(scope="session")
def tiny_module(tmp_path_factory) -> str:
    """A small block-structured Hub-format module (32x32 input): the fast stand-in for EfficientNet."""
    from pipeline.hub_modules import tiny
    return tiny.build_tiny_module(str(tmp_path_factory.mktemp("modules") / "tiny"), image_size=32, output_dim=16)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> str:
    """The project's sample dataset, 8 images per class."""
    from pipeline import sample_data
    root = str(tmp_path_factory.mktemp("data") / "images")
    sample_data.generate_dataset(root, images_per_class=8, seed=1)
    return root
