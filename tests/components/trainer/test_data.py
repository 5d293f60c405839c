"""Stage 2's augmentation: a random crop resized back, mirrored for about half the images."""
import numpy as np
import tensorflow as tf

from hubtfx.components.trainer import data


def _augment_in_graph(images: tf.Tensor, seed: int) -> np.ndarray:
    """As the Trainer runs it, in a dataset map: in a graph, random ops that share a seed draw the same numbers."""
    return tf.function(lambda x: data.augment(x, seed))(images).numpy()


def _left_to_right_ramps(count: int) -> tf.Tensor:
    ramp = tf.linspace(0.0, 1.0, 64)
    return tf.tile(ramp[tf.newaxis, tf.newaxis, :, tf.newaxis], [count, 64, 1, 3])


def test_augmentation_keeps_shape_and_range_and_mirrors_about_half():
    tf.random.set_seed(0)
    augmented = _augment_in_graph(_left_to_right_ramps(200), seed=3)

    assert augmented.shape == (200, 64, 64, 3)
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0
    slope = augmented[:, 32, -1, 0] - augmented[:, 32, 0, 0]
    assert np.all(np.abs(slope) > 0.7)  # a crop keeps at least 80% of the ramp: clearly rising or falling
    assert 70 <= np.sum(slope < 0) <= 130


def test_mirroring_is_independent_of_the_crop_size():
    tf.random.set_seed(1)
    augmented = _augment_in_graph(_left_to_right_ramps(400), seed=0)
    span = np.abs(augmented[:, 32, -1, 0] - augmented[:, 32, 0, 0])  # the crop's share of the width
    mirrored = augmented[:, 32, -1, 0] < augmented[:, 32, 0, 0]
    small, large = span < np.median(span), span >= np.median(span)
    assert 0.3 < mirrored[small].mean() < 0.7 and 0.3 < mirrored[large].mean() < 0.7
