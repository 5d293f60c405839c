"""Image decoding shared by training and serving: the only place pixels are produced from file bytes.

Every image, whatever its format (JPEG, PNG incl. RGBA/16-bit/palette, GIF first frame, BMP, grayscale), becomes
3-channel RGB, is resized to the module's input size and scaled to the module's value range. The Transform graph
embeds these ops, so the exported model's serving signatures run exactly the same code.
"""
from typing import Sequence, Tuple

import tensorflow as tf


def decode_rgb(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes one encoded image to uint8 RGB [h, w, 3]; animated GIFs give their first frame."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def resize_and_scale(image: tf.Tensor, size: Tuple[int, int], value_range: Sequence[float]) -> tf.Tensor:
    """Resizes uint8 RGB to `size` (antialiased bilinear, aspect not kept) and maps [0, 255] to `value_range`."""
    low, high = float(value_range[0]), float(value_range[1])
    resized = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
    scaled = tf.clip_by_value(resized, 0.0, 255.0) / 255.0
    return low + scaled * (high - low)


def decode_batch(image_bytes: tf.Tensor, size: Tuple[int, int], value_range: Sequence[float]) -> tf.Tensor:
    """Encoded images [batch] -> float32 [batch, height, width, 3]."""
    height, width = int(size[0]), int(size[1])
    return tf.map_fn(
        lambda raw: resize_and_scale(decode_rgb(raw), (height, width), value_range),
        image_bytes,
        fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
    )
