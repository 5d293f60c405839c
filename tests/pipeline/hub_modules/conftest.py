"""Session-scoped modules for the hub_modules tests: each is built once (EfficientNet ~15 s, tiny ~2 s)."""
import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


@pytest.fixture(scope="session")
def module_cache(tmp_path_factory):
    """A private cache root, so tests never touch (or reuse) the user's ~/.cache/hubtfx."""
    return str(tmp_path_factory.mktemp("hubtfx_cache"))


@pytest.fixture(scope="session")
def classification_module(module_cache):
    from pipeline.hub_modules.builder import build_module

    return build_module("classification", cache_dir=module_cache)


@pytest.fixture(scope="session")
def feature_vector_module(module_cache):
    from pipeline.hub_modules.builder import build_module

    return build_module("feature_vector", cache_dir=module_cache)


@pytest.fixture(scope="session")
def tiny_module(tmp_path_factory):
    from pipeline.hub_modules.tiny import build_tiny_module

    return build_tiny_module(str(tmp_path_factory.mktemp("tiny") / "module"), image_size=32, output_dim=16, seed=0)
