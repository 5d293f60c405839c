"""Transform user code: raw tf.Example features -> model inputs, referenced by dotted path from the pipeline.

What the raw feature becomes is the modality's (`custom_config["modality"]`, image when absent; see
hubtfx.components.modality). For images, the image size, value range and resize method arrive in `custom_config`;
the pipeline takes them from the Hub module's declared input contract, so Transform always produces what the
module expects. The aspect policy is the user's choice (config `aspect`).
"""
from typing import Any, Dict

import tensorflow as tf

from hubtfx.components.common.feature_keys import LABEL_KEY, TRANSFORMED_LABEL_KEY
from hubtfx.components.modality import registry

# The Transform custom_config key naming the modality (see pipeline.create_components).
MODALITY_KEY = "modality"


def preprocessing_fn(inputs: Dict[str, tf.Tensor], custom_config: Dict[str, Any]) -> Dict[str, tf.Tensor]:
    """The modality's preprocessing of its raw feature (images: decodes and resizes `image_raw`); passes `label`
    through (absent at serving time, where TFT drops it)."""
    modality = registry.modality_named(custom_config.get(MODALITY_KEY, registry.DEFAULT_MODALITY))
    outputs = dict(modality.preprocess(tf.reshape(inputs[modality.raw_feature], [-1]), custom_config))
    if LABEL_KEY in inputs:
        outputs[TRANSFORMED_LABEL_KEY] = tf.reshape(inputs[LABEL_KEY], [-1])
    return outputs
