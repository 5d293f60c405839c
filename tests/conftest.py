"""Shared fixtures. TF_USE_LEGACY_KERAS must be set before TensorFlow is imported anywhere."""
import os
import shutil

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import contextlib
import socket

import pytest


_LOOPBACK = ("localhost", "127.0.0.1", "::1", "")


@contextlib.contextmanager
def refusing_network(attempts: list):
    """Within the block, every name lookup or connection to a host other than this machine is recorded in
    `attempts` as (host, port) and fails with OSError, as it would offline; loopback (Beam's and ML Metadata's
    local services) is untouched. In this process only."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def refuse(host, port):
        attempts.append((host, port))
        raise OSError(f"network refused by the test's guard: {host}:{port}")

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in _LOOPBACK:
            refuse(host, port)
        return real_getaddrinfo(host, port, *args, **kwargs)

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK:
            refuse(address[0], address[1])
        return real_connect(sock, address)

    socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
    try:
        yield attempts
    finally:
        socket.getaddrinfo, socket.socket.connect = real_getaddrinfo, real_connect


@pytest.fixture(scope="session")
def network_guard():
    """`refusing_network` for tests: `with network_guard(attempts): ...`."""
    return refusing_network


@pytest.fixture(scope="session", autouse=True)
def module_cache(tmp_path_factory) -> str:
    """A private module cache for the whole session (also for CLI subprocesses): never the user's ~/.cache."""
    path = str(tmp_path_factory.mktemp("hubtfx_cache"))
    os.environ["HUBTFX_CACHE_DIR"] = path
    return path


@pytest.fixture(scope="session")
def feature_vector_module(module_cache) -> str:
    """The real EfficientNet-Lite0 feature-vector module, built once per session (~15 s)."""
    from hubtfx.pipeline.hub_modules.builder import build_module
    return build_module("feature_vector", cache_dir=module_cache)


@pytest.fixture(scope="session")
def tiny_module(tmp_path_factory) -> str:
    """A small block-structured Hub-format module (32x32 input): the fast stand-in for EfficientNet."""
    from hubtfx.pipeline.hub_modules import tiny
    return tiny.build_tiny_module(str(tmp_path_factory.mktemp("modules") / "tiny"), image_size=32, output_dim=16)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> str:
    """The project's sample dataset, 8 images per class."""
    from hubtfx.pipeline.datasets import sample_data
    root = str(tmp_path_factory.mktemp("data") / "images")
    sample_data.generate_dataset(root, images_per_class=8, seed=1)
    return root


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_module, sample_root, network_attempts):
    """One full local pipeline run on a private copy of the tiny module, deleted afterwards (the pushed model
    must not need it). Returns (config, its ResolvedModule, RunSummary)."""
    from hubtfx.pipeline import local_runner
    from hubtfx.pipeline.config import PipelineConfig
    from hubtfx.pipeline.hub_modules import module_resolution
    work = tmp_path_factory.mktemp("run")
    module_copy = str(work / "module")
    shutil.copytree(tiny_module, module_copy)
    config = PipelineConfig(data_root=sample_root, output_dir=str(work / "out"), hub_handle=module_copy,
                            stage2_epochs=1, min_validation_examples=2, accuracy_threshold=0.0, batch_size=8,
                            stage2_significance=1.0)  # toy slices: run and keep stage 2 (its machinery is under test)
    module = module_resolution.resolve(config)
    with refusing_network(network_attempts):
        summary = local_runner.run_local(config, module)
    shutil.rmtree(module_copy)
    return config, module, summary


@pytest.fixture(scope="session")
def network_attempts():
    """The non-loopback network attempts (host, port) made during `finished_run`'s local run: none is allowed."""
    return []
