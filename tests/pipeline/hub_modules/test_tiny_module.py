"""The tiny stand-in module: hub.KerasLayer compatibility, block names, frozen BN, determinism."""
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from hubtfx.components.common.contract import read_contract
from hubtfx.pipeline.hub_modules.tiny import build_tiny_module


def _images(n=4, size=32, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def test_tiny_module_loads_with_keras_layer(tiny_module):
    layer = hub.KerasLayer(tiny_module)
    assert layer(_images()).shape == (4, 16)
    contract = read_contract(tiny_module)
    assert (contract.image_size, contract.output_dim, contract.kind) == ((32, 32), 16, "feature_vector")


def test_tiny_module_has_the_reusable_saved_model_api(tiny_module):
    loaded = tf.saved_model.load(tiny_module)
    # (images, training, return_levels): tf.function canonicalises the keyword arguments to positions.
    traced = sorted((f.structured_input_signature[0][2], f.structured_input_signature[0][1])
                    for f in loaded.__call__.concrete_functions)
    assert traced == [(False, False), (False, True), (True, False), (True, True)]
    levels = loaded(_images(), training=False, return_levels=True)
    assert {name: tuple(t.shape) for name, t in levels.items()} == {
        "default": (4, 16), "block_02": (4, 16), "block_03": (4, 32)}
    assert len(loaded.variables) > len(loaded.trainable_variables) > 0
    assert list(loaded.regularization_losses) == []
    outputs = loaded.signatures["serving_default"](images=tf.constant(_images()))
    assert outputs["feature_vector"].shape == (4, 16)


def test_tiny_module_variables_are_named_by_block(tiny_module):
    layer = hub.KerasLayer(tiny_module, trainable=True)
    names = [v.name for v in layer.trainable_weights]
    for prefix in ("stem/", "block_00/", "block_01/", "block_02/", "block_03/", "head/"):
        assert any(n.startswith(prefix) for n in names), f"no variable under {prefix}: {names}"
    assert not any("moving_" in n for n in names), "BN moving statistics must not be trainable"
    assert any("moving_mean" in v.name for v in layer.non_trainable_weights)


def test_training_step_changes_only_trainable_variables(tiny_module):
    layer = hub.KerasLayer(tiny_module, trainable=True)
    model = tf_keras.Sequential([tf_keras.Input((32, 32, 3)), layer, tf_keras.layers.Dense(1)])
    frozen_before = [v.numpy().copy() for v in layer.non_trainable_weights]
    trainable_before = [v.numpy().copy() for v in layer.trainable_weights]
    x = _images()
    # Batch statistics differ from the moving ones, so training-mode BN would give different outputs.
    np.testing.assert_allclose(layer(x, training=True), layer(x, training=False), rtol=1e-5, atol=1e-6)

    optimizer = tf_keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True) - 1.0))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    assert all(np.array_equal(b, v.numpy()) for b, v in zip(frozen_before, layer.non_trainable_weights))
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(trainable_before, layer.trainable_weights)]
    assert all(changed), "every trainable module variable should receive a gradient"


def test_same_seed_gives_same_weights_and_other_seed_differs(tiny_module, tmp_path):
    again = build_tiny_module(str(tmp_path / "again"), seed=0)
    other = build_tiny_module(str(tmp_path / "other"), seed=1)
    data = os.path.join("variables", "variables.data-00000-of-00001")
    assert Path(again, data).read_bytes() == Path(tiny_module, data).read_bytes()
    assert Path(other, data).read_bytes() != Path(tiny_module, data).read_bytes()
    x = _images()
    np.testing.assert_array_equal(hub.KerasLayer(again)(x), hub.KerasLayer(tiny_module)(x))


def test_export_refuses_to_overwrite_a_module(tiny_module):
    with pytest.raises(FileExistsError, match="empty directory"):
        build_tiny_module(tiny_module)
