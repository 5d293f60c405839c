"""Warm start: the classification head of the last pushed model, saved with it and reused by the next training.

The export writes the head's weights and class names to `assets.extra/` of the SavedModel (TF Serving's folder
for files it does not load), so any pushed version can seed the next head without loading the whole model.
"""
import io
import json
import logging
import os
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

HEAD_WEIGHTS_FILE = os.path.join("assets.extra", "hubtfx_head.npz")
HEAD_CLASSES_FILE = os.path.join("assets.extra", "hubtfx_head_classes.json")


def save_head(head, class_names: Sequence[str], export_dir: str) -> None:
    """Writes the head's weights (in layer order) and its class names beside the exported model."""
    tf.io.gfile.makedirs(os.path.join(export_dir, "assets.extra"))
    buffer = io.BytesIO()  # np.savez seeks, which write-mode GFiles (gs://) do not support
    np.savez(buffer, *head.get_weights())
    with tf.io.gfile.GFile(os.path.join(export_dir, HEAD_WEIGHTS_FILE), "wb") as f:
        f.write(buffer.getvalue())
    with tf.io.gfile.GFile(os.path.join(export_dir, HEAD_CLASSES_FILE), "w") as f:
        json.dump({"classes": list(class_names)}, f)


def load_head(model_dir: str, class_names: Sequence[str]) -> Optional[List[np.ndarray]]:
    """The head weights of the model in `model_dir`, or None (with the reason logged) if they cannot be reused."""
    if not model_dir:
        return None
    weights_path = os.path.join(model_dir, HEAD_WEIGHTS_FILE)
    if not tf.io.gfile.exists(weights_path):
        logging.warning("Warm start: %s has no saved head (pushed before warm start existed); training the head "
                        "from scratch.", model_dir)
        return None
    with tf.io.gfile.GFile(os.path.join(model_dir, HEAD_CLASSES_FILE)) as f:
        previous_classes = json.load(f)["classes"]
    if list(previous_classes) != list(class_names):
        logging.warning("Warm start: the classes changed (%s -> %s); training the head from scratch.",
                        previous_classes, list(class_names))
        return None
    with tf.io.gfile.GFile(weights_path, "rb") as f:
        archive = np.load(io.BytesIO(f.read()))
    return [archive[f"arr_{i}"] for i in range(len(archive.files))]


def initialise_head(head, weights: List[np.ndarray], feature_dim: int) -> bool:
    """Builds `head` for `feature_dim` inputs and sets `weights`; False (head untouched) if the shapes differ."""
    head.build((None, feature_dim))
    expected = [tuple(w.shape) for w in head.get_weights()]
    if expected != [tuple(w.shape) for w in weights]:
        logging.warning("Warm start: the saved head has shapes %s, this head %s (another backbone?); training "
                        "the head from scratch.", [w.shape for w in weights], expected)
        return False
    head.set_weights(weights)
    logging.info("Warm start: the head starts from the last pushed model's head.")
    return True
