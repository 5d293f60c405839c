"""Untrusted artifacts beyond the cases tests/pipeline/hub_modules and tests/kubeflow already cover (see
RELIABILITY.md): any non-allowed pickle global, symlinked module folders, the compiling machine's environment."""
import dataclasses
import os
import socket

import pytest
import tensorflow as tf

from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.hub_modules import builder
from hubtfx.pipeline.hub_modules import module_resolution
from hubtfx.pipeline.hub_modules.torch_pickle import UnsafePickleError, load_state_dict
from hubtfx.pipeline.hub_modules.vetting import UnsafeModuleError


@pytest.mark.parametrize("module, name", [
    ("builtins", "getattr"), ("builtins", "__import__"), ("shutil", "rmtree"), ("pickle", "loads"),
    ("numpy", "load"), ("collections", "Counter"),
])
def test_any_global_outside_the_allow_list_is_refused(tmp_path, module, name):
    path = tmp_path / "weights.pth"
    path.write_bytes(f"c{module}\n{name}\n(tR.".encode())
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
        load_state_dict(str(path))


def _save_file_reading_module(path) -> str:
    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def __call__(self, images):
            secret = tf.io.read_file("/etc/hostname")
            return tf.reduce_mean(images, axis=[1, 2]) + tf.cast(tf.strings.length(secret), tf.float32)

    module = Module()
    tf.saved_model.save(module, str(path), signatures=module.__call__.get_concrete_function())
    return str(path)


def test_a_symlinked_module_folder_is_vetted_and_hashed_like_its_target(tmp_path, tiny_module):
    link = tmp_path / "linked-module"
    os.symlink(tiny_module, link)
    resolved = module_resolution.resolve(PipelineConfig(hub_handle=str(link)))
    assert resolved.sha256 == builder.module_sha256(tiny_module)

    unsafe_link = tmp_path / "linked-unsafe"
    os.symlink(_save_file_reading_module(tmp_path / "elsewhere" / "reader"), unsafe_link)
    with pytest.raises(UnsafeModuleError, match="ReadFile"):
        module_resolution.resolve(PipelineConfig(hub_handle=str(unsafe_link), image_size=(8, 8)))


_CANARIES = {"HUBTFX_CANARY": "canary-7c1e9b2d", "GOOGLE_APPLICATION_CREDENTIALS": "/secrets/canary-sa-4f0a.json",
             "AWS_SECRET_ACCESS_KEY": "canaryAKIA9d8e7f6a5b4c"}


def test_compiled_specs_hold_no_environment_variable_of_the_compiling_machine(tmp_path, monkeypatch,
                                                                               feature_vector_module):
    from hubtfx.kubeflow import runner  # pylint: disable=import-outside-toplevel
    for name, value in _CANARIES.items():
        monkeypatch.setenv(name, value)
    config = PipelineConfig(image="us-docker.pkg.dev/p/r/hubtfx:1", data_root="gs://b/flowers",
                            output_dir="gs://b/run", gcp_project="p", gcp_region="europe-west4")
    config = dataclasses.replace(config, hub_handle="")
    for target in ("vertex", "kubeflow"):
        spec_path = str(tmp_path / f"{target}.spec")
        runner.compile_to_file(*runner.prepare(config, target), target, spec_path)
        with open(spec_path, encoding="utf-8") as handle:
            text = handle.read()
        for value in [*_CANARIES.values(), socket.gethostname()]:
            assert value not in text, (target, value)
