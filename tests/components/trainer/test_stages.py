"""Stage 1's feature cache and head training, on the tiny real Hub module."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from components.trainer import model, stages
from components.trainer.params import TrainingParams


def _images(count: int, batch_size: int, seed: int = 0) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    images = rng.random((count, 32, 32, 3), dtype=np.float32)
    return tf.data.Dataset.from_tensor_slices((images, rng.integers(0, 3, count))).batch(batch_size)


class CountingBackbone:
    """The real backbone, counting the images it sees in a variable (Python counters would count traces)."""

    def __init__(self, module_path: str):
        self.layer = model.frozen_backbone(module_path)
        self.images_seen = tf.Variable(0, dtype=tf.int32)

    def __call__(self, images, training=False):
        self.images_seen.assign_add(tf.shape(images)[0])
        return self.layer(images, training=training)


def test_head_epochs_reuse_features_computed_once_per_example(tmp_path, tiny_module):
    backbone = CountingBackbone(tiny_module)
    train, evaluation = _images(21, 4), _images(7, 4, seed=1)  # last batches are partial
    params = TrainingParams(stage1_epochs=6, early_stopping_patience=6, batch_size=4)

    result = stages.train_head(train, evaluation, backbone, model.build_head(3, 0.0), params, str(tmp_path),
                               str(tmp_path / "logs"))

    assert int(backbone.images_seen.numpy()) == 21 + 7
    assert len(result.history["loss"]) == 6
    assert result.train_examples == 21
    assert result.eval_loss == min(result.history["val_loss"])  # the best epoch's weights are the ones kept


def test_one_trace_serves_every_batch_size(tiny_module):
    extract = stages.feature_extractor(model.frozen_backbone(tiny_module), _images(5, 4).element_spec[0])
    for size in (4, 1, 3):
        extract(tf.zeros([size, 32, 32, 3]))
    assert extract.experimental_get_tracing_count() == 1


def test_features_beyond_the_memory_bound_go_to_a_file_and_read_back_the_same(tmp_path, tiny_module, monkeypatch):
    extract = stages.feature_extractor(model.frozen_backbone(tiny_module), _images(5, 4).element_spec[0])
    in_memory, count = stages.cached_features(_images(10, 4), extract, str(tmp_path), "a")
    assert count == 10 and not glob.glob(str(tmp_path / "a_*"))

    monkeypatch.setattr(stages, "IN_MEMORY_BYTES", 100)  # smaller than one batch of 16-d features
    on_disk, count = stages.cached_features(_images(10, 4), extract, str(tmp_path), "b")
    assert count == 10 and os.path.getsize(tmp_path / "b_features.tfrecord") > 10 * 16 * 4

    for (memory_features, memory_label), (disk_features, disk_label) in zip(in_memory, on_disk, strict=True):
        np.testing.assert_allclose(memory_features.numpy(), disk_features.numpy(), rtol=1e-6)
        assert int(memory_label) == int(disk_label)


def test_an_empty_split_is_an_actionable_error(tmp_path, tiny_module):
    extract = stages.feature_extractor(model.frozen_backbone(tiny_module), _images(5, 4).element_spec[0])
    with pytest.raises(ValueError, match="eval split has no examples; check the eval_percent"):
        stages.cached_features(_images(4, 4).take(0), extract, str(tmp_path), "eval")
