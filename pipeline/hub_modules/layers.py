"""Layers shared by the modules hubtfx builds.

The ``call`` methods of hubtfx layers are marked ``do_not_convert``: they have no data-dependent Python
control flow, and letting autograph convert them (and, recursively, every Keras internal they call) made
building EfficientNet-Lite0 take tens of seconds instead of a few.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras


class FrozenBatchNormalization(tf_keras.layers.BatchNormalization):
    """BatchNormalization that always normalises with its moving statistics.

    Fine-tuning a pretrained module on a small data set must not overwrite the moving mean/variance that were
    estimated on ImageNet, and batch statistics of tiny batches would make training and serving disagree.
    gamma/beta stay trainable; the moving statistics are never updated.
    """

    @tf.autograph.experimental.do_not_convert  # See module docstring.
    def call(self, inputs, training=None):
        del training  # Deliberately ignored: see the class docstring.
        return super().call(inputs, training=False)
