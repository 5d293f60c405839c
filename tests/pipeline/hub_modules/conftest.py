"""The classification module, built once (~15 s); the other module fixtures are in tests/conftest.py."""
import pytest


@pytest.fixture(scope="session")
def classification_module(module_cache):
    from hubtfx.pipeline.hub_modules.builder import build_module

    return build_module("classification", cache_dir=module_cache)
