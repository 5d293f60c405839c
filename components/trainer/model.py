"""The model: a TF Hub backbone (`hub.KerasLayer`) with a new classification head.

With feature levels (ModuleContract.feature_levels), the backbone layer is called with `return_levels=True`
(through hub.KerasLayer's `arguments`) and the head reads the chosen levels concatenated in a fixed order.

Fine-tuning selects backbone variables by name: image modules built by hubtfx name them `stem/...`, `block_NN/...`,
`head/...`, text encoders `embeddings/...` and `layer_NN/...` (the transformer layers); the top K blocks are the K
highest of those (head counts as the topmost block, the stem or embeddings as the lowest).
"""
import logging
import re
from typing import Callable, List, Optional, Sequence, Set

import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from hubtfx.components.common import artifact_files
from hubtfx.components.common.contract import DEFAULT_LEVEL
from hubtfx.components.trainer import autograph_rules
from hubtfx.components.trainer.params import FALLBACK_FRACTION_PER_BLOCK

autograph_rules.skip_tf_keras()  # before any Keras fit in this process: see autograph_rules

LEVEL_ARGUMENTS = {"return_levels": True}
CROSS_ENTROPY = artifact_files.HISTORY_CROSS_ENTROPY  # a metric: mean cross-entropy (nats), no L2 penalty

_BLOCK_RE = re.compile(r"(?:^|/)(?:block|layer)_(\d+)(?:/|_)")
_HEAD_RE = re.compile(r"(?:^|/)head(?:/|_)")
_STEM_RE = re.compile(r"(?:^|/)(?:stem|embeddings)(?:/|_)")


def block_index(variable_name: str) -> Optional[int]:
    """Position of a variable's block, bottom to top: stem (or embeddings) -1, block_NN (or layer_NN) -> NN, head
    10**6; None if unnamed."""
    match = _BLOCK_RE.search(variable_name)
    if match:
        return int(match.group(1))
    if _HEAD_RE.search(variable_name):
        return 10**6
    if _STEM_RE.search(variable_name):
        return -1
    return None


def select_fine_tune_variables(variables: Sequence[tf.Variable], blocks: Optional[int]) -> List[tf.Variable]:
    """The variables stage 2 trains: those of the top `blocks` blocks (None: all)."""
    if blocks is None:
        return list(variables)
    if blocks <= 0:
        return []
    indices = [block_index(v.name) for v in variables]
    named = sorted({i for i in indices if i is not None})
    if named:
        top = set(named[-blocks:])
        return [v for v, i in zip(variables, indices) if i in top]
    count = max(1, round(len(variables) * min(1.0, blocks * FALLBACK_FRACTION_PER_BLOCK)))
    logging.warning("Module variables carry no block names; unfreezing the last %d of %d variables.",
                    count, len(variables))
    return list(variables)[-count:]


class PartiallyTrainableKerasLayer(hub.KerasLayer):
    """A hub.KerasLayer whose trainable weights are only those `select` picks from the module's trainables.

    hub.KerasLayer is all-or-nothing; fine-tuning the top of a backbone needs the rest to stay frozen.
    """

    def __init__(self, handle: str, select: Callable[[Sequence[tf.Variable]], List[tf.Variable]], **kwargs):
        self._select = select
        self._selected_ids: Set[int] = set()
        self.selected_variable_names: List[str] = []
        super().__init__(handle, trainable=True, **kwargs)

    def _setup_layer(self, trainable=False, **kwargs):
        selected = self._select(list(getattr(self._func, "trainable_variables", [])))
        self._selected_ids = {id(v) for v in selected}
        self.selected_variable_names = [v.name for v in selected]
        super()._setup_layer(trainable, **kwargs)

    def _add_existing_weight(self, weight, trainable=None):
        super()._add_existing_weight(weight, trainable=bool(trainable) and id(weight) in self._selected_ids)


def _level_arguments(levels: Sequence[str]):
    """hub.KerasLayer arguments: the dict of levels only when more than the feature vector is needed."""
    return dict(LEVEL_ARGUMENTS) if tuple(levels) != (DEFAULT_LEVEL,) else None


def frozen_backbone(module_path: str, levels: Sequence[str] = (DEFAULT_LEVEL,)) -> hub.KerasLayer:
    """The frozen module: images -> features [b, d], or a dict of levels when `levels` is more than default."""
    return hub.KerasLayer(module_path, trainable=False, arguments=_level_arguments(levels), name="backbone")


def fine_tunable_backbone(module_path: str, blocks: Optional[int],
                          levels: Sequence[str] = (DEFAULT_LEVEL,)) -> PartiallyTrainableKerasLayer:
    layer = PartiallyTrainableKerasLayer(
        module_path, select=lambda variables: select_fine_tune_variables(variables, blocks),
        arguments=_level_arguments(levels), name="backbone")
    logging.info("Stage 2 unfreezes %d backbone variables: %s", len(layer.selected_variable_names),
                 ", ".join(layer.selected_variable_names))
    return layer


def build_head(num_classes: int, dropout: float, mean=None, std=None, kernel_l2: float = 0.0) -> tf_keras.Sequential:
    """[standardisation] + dropout + dense logits over backbone features float32 [b, d] -> [b, num_classes].

    mean, std (float [d]): a fixed, non-trainable standardisation (x - mean) / std before the dense layer (see
    head.HeadFit); None: none. kernel_l2: the dense kernel's L2 penalty per example (head.HeadFit.l2_per_example).
    """
    layers = []
    if mean is not None:
        layers.append(tf_keras.layers.Normalization(mean=mean, variance=np.square(std), name="standardise"))
    layers += [tf_keras.layers.Dropout(dropout),
               tf_keras.layers.Dense(num_classes, name="logits",
                                     kernel_regularizer=tf_keras.regularizers.L2(kernel_l2) if kernel_l2 else None)]
    return tf_keras.Sequential(layers, name="head")


def set_head_weights(head: tf_keras.Model, kernel, bias) -> None:
    """Builds the head for kernel's input size and sets its dense layer (see head.HeadFit)."""
    head.build((None, int(kernel.shape[0])))
    head.get_layer("logits").set_weights([kernel, bias])


def select_levels(outputs, levels: Sequence[str]) -> tf.Tensor:
    """The backbone's output for the head: the tensor itself, or the chosen levels concatenated in order."""
    if not isinstance(outputs, dict):
        return outputs
    chosen = [outputs[name] for name in levels]
    return chosen[0] if len(chosen) == 1 else tf_keras.layers.Concatenate(name="feature_levels")(chosen)


def image_spec(image_size: Sequence[int]) -> tf.TensorSpec:
    """The model input spec of RGB images of `image_size` (height, width): float32 [batch, h, w, 3]."""
    return tf.TensorSpec([None, int(image_size[0]), int(image_size[1]), 3], tf.float32)


def keras_inputs(input_spec):
    """tf_keras.Input(s) for a model input spec: one tf.TensorSpec [batch, ...] (named "image", the images'
    input) or a dict of them (each named by its key, e.g. TF Hub's BERT encoder inputs)."""
    if isinstance(input_spec, dict):
        return {key: tf_keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name=key)
                for key, spec in sorted(input_spec.items())}
    return tf_keras.Input(shape=input_spec.shape[1:], dtype=input_spec.dtype, name="image")


def build_classifier(backbone: hub.KerasLayer, head: tf_keras.Model, input_spec,
                     levels: Sequence[str] = (DEFAULT_LEVEL,), backbone_input=None) -> tf_keras.Model:
    """The model input (see keras_inputs; images float32 [b, h, w, 3], or a dict of text encoder inputs) -> logits
    float32 [b, num_classes]. backbone_input: maps the model input to what the backbone is called with
    (Modality.backbone_input; the input itself when None)."""
    inputs = keras_inputs(input_spec)
    features = backbone(backbone_input(inputs) if backbone_input else inputs)
    return tf_keras.Model(inputs, head(select_levels(features, levels)), name="classifier")


def compile_classifier(model: tf_keras.Model, learning_rate) -> None:
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # The loss includes the head's L2 penalty; cross_entropy alone is what stage 1's reference is compared with.
        metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                 tf_keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name=CROSS_ENTROPY)],
    )
    if model.built:
        # Creating the optimizer's slot variables now spares fit() a second trace of the training step: a
        # tf.function that creates variables on its first call is traced again.
        model.optimizer.build(model.trainable_variables)
