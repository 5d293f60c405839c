"""Exports a tf_keras image model as a reusable TF2 SavedModel in the TF Hub format.

The exported object looks like a tfhub.dev TF2 module to ``hub.KerasLayer``: a ``__call__(images,
training=False, return_levels=False)`` tf.function traced for both values of ``training`` (and of
``return_levels`` when the module has feature levels: then it returns a dict of pooled intermediate outputs plus
``default``, see ModuleContract.feature_levels; hub.KerasLayer passes it through ``arguments``), ``variables``, ``trainable_variables``
(without batch-norm moving statistics), ``regularization_losses`` and a ``serving_default`` signature.
The contract JSON is written beside saved_model.pb.

Only the variables and the traced functions are saved, not the Keras model object: that keeps Keras
metadata (and its nondeterministic object names) out of the module.
"""
from __future__ import annotations

import logging
import os

import tensorflow as tf

from hubtfx.components.common.contract import DEFAULT_LEVEL, ModuleContract, write_contract

_SIGNATURE_OUTPUT_KEYS = {"feature_vector": "feature_vector", "classification": "logits"}


def _build_hub_object(keras_model, contract: ModuleContract,
                      levels_model=None) -> tf.__internal__.tracking.AutoTrackable:
    """Wraps the model's call and variables into a trackable object with the reusable-SavedModel API."""
    height, width = contract.image_size
    image_spec = tf.TensorSpec([None, height, width, contract.channels], tf.float32, name="images")

    # Closures, not attributes: the Keras models themselves must not be tracked (see module docstring).
    def call(images, training=False, return_levels=False):
        if return_levels:
            return levels_model(images, training=training)
        return keras_model(images, training=training)

    # No autograph: the model has no data-dependent Python control flow, and converting it is slow.
    call_fn = tf.function(call, autograph=False)
    # Trace every branch now: a loaded SavedModel can only run the concrete functions it was saved with.
    for return_levels in ((False, True) if levels_model is not None else (False,)):
        for training in (False, True):
            call_fn.get_concrete_function(image_spec, training=training, return_levels=return_levels)

    output_key = _SIGNATURE_OUTPUT_KEYS[contract.kind]

    @tf.function(input_signature=[image_spec], autograph=False)
    def serve(images):
        return {output_key: keras_model(images, training=False)}

    hub_object = reusable_saved_model(call_fn, keras_model.variables, keras_model.trainable_variables)
    hub_object.serve = serve
    return hub_object


def reusable_saved_model(call_fn, variables, trainable_variables) -> tf.__internal__.tracking.AutoTrackable:
    """The object TF Hub's reusable-SavedModel API asks for (https://www.tensorflow.org/hub/reusable_saved_models):
    a traced ``__call__`` and the ``variables``, ``trainable_variables`` and ``regularization_losses`` lists that
    hub.KerasLayer reads to fine-tune it. Save it with tf.saved_model.save."""
    # A plain trackable object: tf.Module would clash with the `variables`/`trainable_variables` attributes.
    hub_object = tf.__internal__.tracking.AutoTrackable()
    hub_object.__call__ = call_fn
    hub_object.variables = list(variables)
    hub_object.trainable_variables = list(trainable_variables)
    hub_object.regularization_losses = []
    return hub_object


def _check_frozen_statistics(keras_model) -> None:
    """Fails fast if batch-norm moving statistics would be exposed as trainable."""
    trainable = {id(v) for v in keras_model.trainable_variables}
    leaked = [v.name for v in keras_model.variables if "moving_" in v.name and id(v) in trainable]
    if leaked:
        raise ValueError(f"Batch-norm moving statistics must not be trainable, but these are: {leaked}")


def export_hub_module(keras_model, export_dir: str, contract: ModuleContract, levels_model=None) -> str:
    """Saves ``keras_model`` as a TF Hub-format SavedModel plus the contract JSON in ``export_dir``.

    Args:
      keras_model: a built tf_keras model mapping float32 [batch, H, W, C] images to [batch, output_dim].
      export_dir: directory to write (created; must not already hold a SavedModel).
      contract: the module contract; its image_size/channels define the traced input shape.
      levels_model: optional tf_keras model sharing keras_model's layers that maps the same images to a dict
        {level name: [batch, channels]} with exactly contract.feature_levels plus "default" (keras_model's
        output); required iff contract.feature_levels is not empty.

    Returns:
      export_dir.
    """
    if os.path.exists(os.path.join(export_dir, "saved_model.pb")):
        raise FileExistsError(f"{export_dir} already holds a SavedModel; export into an empty directory.")
    _check_frozen_statistics(keras_model)
    if (levels_model is None) != (not contract.feature_levels):
        raise ValueError("Pass a levels_model exactly when the contract declares feature_levels.")
    if levels_model is not None:
        produced = sorted(levels_model.output)
        if produced != sorted((*contract.feature_levels, DEFAULT_LEVEL)):
            raise ValueError(f"levels_model outputs {produced}, the contract declares {contract.feature_levels}.")
    hub_object = _build_hub_object(keras_model, contract, levels_model)
    tf.saved_model.save(
        hub_object,
        export_dir,
        signatures={"serving_default": hub_object.serve.get_concrete_function()},
    )
    write_contract(export_dir, contract)
    logging.info("Exported %s module %r to %s", contract.kind, contract.name, export_dir)
    return export_dir
