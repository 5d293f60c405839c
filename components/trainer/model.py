"""The model: a TF Hub backbone (`hub.KerasLayer`) with a new classification head.

With feature levels (ModuleContract.feature_levels), the backbone layer is called with `return_levels=True`
(through hub.KerasLayer's `arguments`) and the head reads the chosen levels concatenated in a fixed order.

Fine-tuning selects backbone variables by name: modules built by hubtfx name them `stem/...`, `block_NN/...`,
`head/...`, and the top K blocks are the K highest of those (head counts as the topmost block).
"""
import logging
import re
from typing import Callable, List, Optional, Sequence, Set

import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from hubtfx.components.common.contract import DEFAULT_LEVEL
from hubtfx.components.trainer.params import FALLBACK_FRACTION_PER_BLOCK

LEVEL_ARGUMENTS = {"return_levels": True}

_BLOCK_RE = re.compile(r"(?:^|/)block_(\d+)(?:/|_)")
_HEAD_RE = re.compile(r"(?:^|/)head(?:/|_)")
_STEM_RE = re.compile(r"(?:^|/)stem(?:/|_)")


def block_index(variable_name: str) -> Optional[int]:
    """Position of a variable's block, bottom to top: stem -1, block_NN -> NN, head 10**6; None if unnamed."""
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


def build_head(num_classes: int, dropout: float) -> tf_keras.Sequential:
    """Dropout + dense logits over backbone features."""
    return tf_keras.Sequential(
        [tf_keras.layers.Dropout(dropout), tf_keras.layers.Dense(num_classes, name="logits")], name="head")


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


def build_classifier(backbone: hub.KerasLayer, head: tf_keras.Model, image_size: Sequence[int],
                     levels: Sequence[str] = (DEFAULT_LEVEL,)) -> tf_keras.Model:
    """images float32 [b, h, w, 3] -> logits float32 [b, num_classes]."""
    images = tf_keras.Input(shape=(int(image_size[0]), int(image_size[1]), 3), name="image")
    return tf_keras.Model(images, head(select_levels(backbone(images), levels)), name="classifier")


def compile_classifier(model: tf_keras.Model, learning_rate) -> None:
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    if model.built:
        # Creating the optimizer's slot variables now spares fit() a second trace of the training step: a
        # tf.function that creates variables on its first call is traced again.
        model.optimizer.build(model.trainable_variables)
