"""Transform user code: raw tf.Example features -> model inputs, referenced by dotted path from the pipeline.

The image size, value range and resize method arrive in `custom_config`; the pipeline takes them from the Hub
module's declared input contract, so Transform always produces what the module expects. The aspect policy is
the user's choice (config `aspect`).
"""
from typing import Any, Dict

import tensorflow as tf

from hubtfx.components.common.feature_keys import IMAGE_KEY, LABEL_KEY, TRANSFORMED_IMAGE_KEY, TRANSFORMED_LABEL_KEY
from hubtfx.components.transform import image_ops


def preprocessing_fn(inputs: Dict[str, tf.Tensor], custom_config: Dict[str, Any]) -> Dict[str, tf.Tensor]:
    """Decodes and resizes `image_raw`; passes `label` through (absent at serving time, where TFT drops it)."""
    image_bytes = tf.reshape(inputs[IMAGE_KEY], [-1])
    outputs = {
        TRANSFORMED_IMAGE_KEY: image_ops.decode_batch(
            image_bytes, tuple(custom_config["image_size"]), custom_config["value_range"],
            custom_config.get("resize_method", "bilinear"), custom_config.get("aspect", "squash")),
    }
    if LABEL_KEY in inputs:
        outputs[TRANSFORMED_LABEL_KEY] = tf.reshape(inputs[LABEL_KEY], [-1])
    return outputs
