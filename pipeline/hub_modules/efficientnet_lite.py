"""EfficientNet-Lite0 in tf_keras with ImageNet weights converted from the PyTorch state dict.

Architecture (Tan & Le, EfficientNet; the "Lite" variant for mobile/edge): no squeeze-excitation, ReLU6, a
fixed 32-channel stem and 1280-channel head, 16 MBConv blocks in 7 stages. The weights were trained in
TensorFlow by Google and ported to PyTorch; converting back undoes the PyTorch layouts (OIHW kernels,
(out, in) dense) and must use TF's asymmetric 'same' padding and BN epsilon 1e-3, as in the original.

Variable names carry the block so fine-tuning can select the top blocks:
``stem/...``, ``block_00/...`` .. ``block_15/...``, ``head/...``, ``classifier/...``.
"""
from __future__ import annotations

import logging
from typing import Dict, List, NamedTuple

import numpy as np
import tensorflow as tf
import tf_keras

from hubtfx.pipeline.hub_modules.layers import FrozenBatchNormalization

IMAGE_SIZE = 224
FEATURE_DIM = 1280
NUM_CLASSES = 1000
BN_EPSILON = 1e-3  # TF's EfficientNet value; PyTorch's default 1e-5 would shift the logits noticeably.
# Indices of the blocks that downsample (first block of stages 2, 3, 4 and 6); strides are not in the weights.
_STRIDE_2_BLOCKS = frozenset({1, 3, 5, 11})
_NUM_BLOCKS = 16
# Blocks whose pooled outputs the feature-vector module also offers (ModuleContract.feature_levels): the ends of
# stages 5 and 6 and their middles, and the last block. On small grey-scale images far from ImageNet, logistic
# regression on block_10 alone beat the final features (0.874 vs 0.818), and these five plus the final features
# reached 0.895 (issue 12 of this project; the transferability result of Yosinski et al., NeurIPS 2014).
LEVEL_BLOCKS = (8, 10, 12, 14, 15)


class BlockSpec(NamedTuple):
    """Shape of one MBConv block, read from the state dict."""

    index: int
    in_channels: int
    expanded_channels: int  # == in_channels when the block has no expansion conv (expand ratio 1).
    out_channels: int
    kernel_size: int
    stride: int

    @property
    def has_expansion(self) -> bool:
        return self.expanded_channels != self.in_channels

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs(state_dict: Dict[str, np.ndarray]) -> List[BlockSpec]:
    """Derives the 16 block shapes from the weight shapes, so a mismatching checkpoint fails loudly."""
    specs = []
    for index in range(_NUM_BLOCKS):
        prefix = f"_blocks.{index}."
        depthwise = state_dict[prefix + "_depthwise_conv.weight"]  # (C, 1, kh, kw)
        project = state_dict[prefix + "_project_conv.weight"]  # (out, C, 1, 1)
        expand = state_dict.get(prefix + "_expand_conv.weight")  # (C, in, 1, 1) or absent
        in_channels = expand.shape[1] if expand is not None else depthwise.shape[0]
        specs.append(
            BlockSpec(
                index=index,
                in_channels=in_channels,
                expanded_channels=depthwise.shape[0],
                out_channels=project.shape[0],
                kernel_size=depthwise.shape[2],
                stride=2 if index in _STRIDE_2_BLOCKS else 1,
            )
        )
    if f"_blocks.{_NUM_BLOCKS}._project_conv.weight" in state_dict:
        raise ValueError(f"The state dict has more than {_NUM_BLOCKS} blocks; it is not EfficientNet-Lite0.")
    return specs


def _conv(filters: int, kernel_size: int, stride: int, name: str) -> tf_keras.layers.Conv2D:
    return tf_keras.layers.Conv2D(filters, kernel_size, stride, padding="same", use_bias=False, name=name)


def _bn(name: str) -> FrozenBatchNormalization:
    return FrozenBatchNormalization(epsilon=BN_EPSILON, name=name)


class MBConvBlock(tf_keras.layers.Layer):
    """Inverted residual block: [1x1 expand + BN + ReLU6], depthwise + BN + ReLU6, 1x1 project + BN, [+ input]."""

    def __init__(self, spec: BlockSpec, **kwargs):
        super().__init__(name=f"block_{spec.index:02d}", **kwargs)
        self.spec = spec
        if spec.has_expansion:
            self.expand_conv = _conv(spec.expanded_channels, 1, 1, "expand_conv")
            self.expand_bn = _bn("expand_bn")
        self.depthwise_conv = tf_keras.layers.DepthwiseConv2D(
            spec.kernel_size, spec.stride, padding="same", use_bias=False, name="depthwise_conv"
        )
        self.depthwise_bn = _bn("depthwise_bn")
        self.project_conv = _conv(spec.out_channels, 1, 1, "project_conv")
        self.project_bn = _bn("project_bn")

    @tf.autograph.experimental.do_not_convert  # See layers.py: autograph would dominate build time.
    def call(self, inputs, training=None):
        x = inputs
        if self.spec.has_expansion:
            x = tf.nn.relu6(self.expand_bn(self.expand_conv(x), training=training))
        x = tf.nn.relu6(self.depthwise_bn(self.depthwise_conv(x), training=training))
        x = self.project_bn(self.project_conv(x), training=training)
        # No drop-connect: it is a training regulariser and these weights are already trained.
        return x + inputs if self.spec.has_residual else x


class ConvBNReLU6(tf_keras.layers.Layer):
    """Conv + frozen BN + ReLU6, used for the stem (3x3 s2) and the head (1x1)."""

    def __init__(self, filters: int, kernel_size: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.conv = _conv(filters, kernel_size, stride, "conv")
        self.bn = _bn("bn")

    @tf.autograph.experimental.do_not_convert  # See layers.py: autograph would dominate build time.
    def call(self, inputs, training=None):
        return tf.nn.relu6(self.bn(self.conv(inputs), training=training))


def build_keras_model(specs: List[BlockSpec], include_classifier: bool) -> tf_keras.Model:
    """EfficientNet-Lite0 taking RGB in [0, 1]; outputs 1280 pooled features or 1000 ImageNet logits."""
    inputs = tf_keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    # The Lite checkpoints were trained on (pixel - 127) / 128 with pixels in [0, 255].
    x = tf_keras.layers.Rescaling(scale=255.0 / 128.0, offset=-127.0 / 128.0, name="input_normalization")(inputs)
    x = ConvBNReLU6(specs[0].in_channels, 3, 2, name="stem")(x)
    for spec in specs:
        x = MBConvBlock(spec)(x)
    x = ConvBNReLU6(FEATURE_DIM, 1, 1, name="head")(x)
    outputs = tf_keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if include_classifier:
        outputs = tf_keras.layers.Dense(NUM_CLASSES, name="classifier")(outputs)
    name = "efficientnet_lite0_classification" if include_classifier else "efficientnet_lite0_feature_vector"
    return tf_keras.Model(inputs, outputs, name=name)


def level_name(block: int) -> str:
    return f"block_{block:02d}"


def feature_levels_model(model: tf_keras.Model) -> tf_keras.Model:
    """A model sharing ``model``'s layers that returns {"default": its output, "block_NN": pooled block output}."""
    outputs = {"default": model.output}
    for block in LEVEL_BLOCKS:
        name = level_name(block)
        outputs[name] = tf_keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(model.get_layer(name).output)
    return tf_keras.Model(model.input, outputs, name=f"{model.name}_levels")


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)


def _bn_weights(keras_prefix: str, torch_prefix: str, state_dict) -> Dict[str, np.ndarray]:
    return {
        f"{keras_prefix}/gamma:0": state_dict[f"{torch_prefix}.weight"],
        f"{keras_prefix}/beta:0": state_dict[f"{torch_prefix}.bias"],
        f"{keras_prefix}/moving_mean:0": state_dict[f"{torch_prefix}.running_mean"],
        f"{keras_prefix}/moving_variance:0": state_dict[f"{torch_prefix}.running_var"],
    }


def keras_weights_from_state_dict(state_dict, specs: List[BlockSpec]) -> Dict[str, np.ndarray]:
    """Maps the PyTorch state dict to {keras variable name: array in Keras layout}."""
    weights = {"stem/conv/kernel:0": _conv_kernel(state_dict["_conv_stem.weight"])}
    weights.update(_bn_weights("stem/bn", "_bn0", state_dict))
    for spec in specs:
        keras, torch = f"block_{spec.index:02d}", f"_blocks.{spec.index}"
        if spec.has_expansion:
            weights[f"{keras}/expand_conv/kernel:0"] = _conv_kernel(state_dict[f"{torch}._expand_conv.weight"])
            weights.update(_bn_weights(f"{keras}/expand_bn", f"{torch}._bn0", state_dict))
        weights[f"{keras}/depthwise_conv/depthwise_kernel:0"] = _depthwise_kernel(
            state_dict[f"{torch}._depthwise_conv.weight"]
        )
        weights.update(_bn_weights(f"{keras}/depthwise_bn", f"{torch}._bn1", state_dict))
        weights[f"{keras}/project_conv/kernel:0"] = _conv_kernel(state_dict[f"{torch}._project_conv.weight"])
        weights.update(_bn_weights(f"{keras}/project_bn", f"{torch}._bn2", state_dict))
    weights["head/conv/kernel:0"] = _conv_kernel(state_dict["_conv_head.weight"])
    weights.update(_bn_weights("head/bn", "_bn1", state_dict))
    weights["classifier/kernel:0"] = state_dict["_fc.weight"].T  # (out, in) -> (in, out)
    weights["classifier/bias:0"] = state_dict["_fc.bias"]
    return weights


def load_converted_weights(model: tf_keras.Model, weights: Dict[str, np.ndarray]) -> None:
    """Assigns every model variable from ``weights`` by name, checking that nothing is missing or misshaped."""
    values = []
    for variable in model.weights:
        if variable.name not in weights:
            raise ValueError(f"No converted weight for Keras variable {variable.name}.")
        value = weights[variable.name]
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"{variable.name}: Keras shape {tuple(variable.shape)} != converted {value.shape}.")
        values.append(np.ascontiguousarray(value, dtype=np.float32))
    model.set_weights(values)


def efficientnet_lite0(state_dict: Dict[str, np.ndarray], include_classifier: bool) -> tf_keras.Model:
    """Builds EfficientNet-Lite0 with the given PyTorch ImageNet weights (see module docstring for names)."""
    specs = block_specs(state_dict)
    model = build_keras_model(specs, include_classifier)
    load_converted_weights(model, keras_weights_from_state_dict(state_dict, specs))
    logging.info("Built %s with %d weights", model.name, len(model.weights))
    return model
