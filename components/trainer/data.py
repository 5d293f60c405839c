"""Input pipelines: raw tf.Examples -> the Transform graph -> (model input, label) batches.

Transform runs with materialize=False (decoded float images would be ~20x the JPEG bytes on disk), so the
Trainer applies the same Transform graph here that the exported model applies at serving time.
"""
from typing import List

import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from hubtfx.components.common import feature_keys


def transformed_dataset(file_patterns: List[str], data_accessor, tft_output: tft.TFTransformOutput,
                        batch_size: int, modality) -> tf.data.Dataset:
    """One pass over the examples in file order (unshuffled, so two passes see the same rows in the same order) as
    (model input, labels [b] int64), batched; the model input is the modality's (Modality.model_input): images
    [b, h, w, 3] float32, or a dict of text encoder inputs int64 [b, seq_length]."""
    raw = data_accessor.tf_dataset_factory(
        file_patterns,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=False),
        tft_output.raw_metadata.schema,
    )
    tft_layer = tft_output.transform_features_layer()

    def apply_transform(raw_features):
        transformed = tft_layer(raw_features)
        return (modality.model_input(transformed),
                tf.reshape(transformed[feature_keys.TRANSFORMED_LABEL_KEY], [-1]))

    return raw.map(apply_transform, num_parallel_calls=tf.data.AUTOTUNE)


def augment(images: tf.Tensor, seed: int) -> tf.Tensor:
    """Light augmentation for fine-tuning: a random crop of 80-100% of each side, resized back, mirrored left-right
    for half the images.

    One crop_and_resize over the batch does both: a box whose x1 > x2 samples the crop mirrored, which costs
    nothing extra, where a separate flip would copy the batch twice. On CPU every copy competes with training.
    """
    batch = tf.shape(images)[0]
    # Distinct op seeds: ops sharing one draw the same numbers, which would tie the mirroring to the crop size.
    scale = tf.random.uniform([batch, 1], 0.8, 1.0, seed=seed)
    top_left = tf.random.uniform([batch, 2], 0.0, 1.0, seed=seed + 1) * (1.0 - scale)
    y1, x1 = top_left[:, :1], top_left[:, 1:]
    y2, x2 = y1 + scale, x1 + scale
    mirror = tf.random.uniform([batch, 1], seed=seed + 2) < 0.5
    boxes = tf.concat([y1, tf.where(mirror, x2, x1), y2, tf.where(mirror, x1, x2)], axis=1)
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), tf.shape(images)[1:3])
