"""Handles as users give them: the bundled default, local folders, remote URLs (offline here), unsafe modules."""
import dataclasses
import time

import pytest
import tensorflow as tf

from pipeline import module_resolution
from pipeline.config import ConfigError, PipelineConfig
from pipeline.hub_modules.vetting import UnsafeModuleError


def test_default_handle_is_the_bundled_efficientnet_with_its_contract(feature_vector_module):
    config = module_resolution.resolve(PipelineConfig())
    assert config.module_path == feature_vector_module
    assert config.image_size == (224, 224) and config.value_range == (0.0, 1.0)
    assert len(config.module_sha256) == 64


def test_local_folder_handle_resolves_and_image_size_can_be_overridden(tiny_module):
    config = module_resolution.resolve(PipelineConfig(hub_handle=tiny_module))
    assert config.module_path == tiny_module and config.image_size == (32, 32)
    overridden = module_resolution.resolve(PipelineConfig(hub_handle=tiny_module, image_size=(48, 48)))
    assert overridden.image_size == (48, 48)


def test_folder_without_a_saved_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a SavedModel folder"):
        module_resolution.resolve(PipelineConfig(hub_handle=str(tmp_path)))


def test_unreachable_remote_handle_stops_with_a_pointer_to_the_offline_default(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    handle = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    started = time.monotonic()
    with pytest.raises(module_resolution.ModuleUnavailableError) as error:
        module_resolution.resolve(PipelineConfig(hub_handle=handle))
    assert handle in str(error.value) and "Omit --hub-handle" in str(error.value)
    assert time.monotonic() - started < 120


def test_unsafe_module_is_refused_unless_allowed(tmp_path):
    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def __call__(self, images):
            return tf.reduce_mean(images, [1, 2]) + tf.cast(tf.strings.length(tf.io.read_file(__file__)), tf.float32)

    module = Reader()
    tf.saved_model.save(module, str(tmp_path), signatures=module.__call__.get_concrete_function())
    config = PipelineConfig(hub_handle=str(tmp_path))
    with pytest.raises(UnsafeModuleError, match="ReadFile"):
        module_resolution.resolve(config)
    allowed = module_resolution.resolve(dataclasses.replace(config, allow_unsafe_module_ops=True))
    assert allowed.image_size == (8, 8)
