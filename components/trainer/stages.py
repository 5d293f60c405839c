"""The two training stages.

Stage 1 trains only the head, on backbone features computed once per example and cached to a file (bounded
memory), so many head epochs cost about one backbone pass. Stage 2 unfreezes the top blocks of the backbone and
fine-tunes at a low, warmed-up and decaying learning rate; BatchNorm statistics stay frozen (the module runs its
BatchNorm in inference mode). The better stage by eval accuracy (then loss) is kept.
"""
import dataclasses
import logging
import os
import time
from typing import Dict, List, Optional

import tensorflow as tf
import tf_keras

from components.trainer import data, model
from components.trainer.params import TrainingParams

_SHUFFLE_BUFFER = 2048
_FEATURE_LOG_EVERY = 256


@dataclasses.dataclass
class StageResult:
    name: str
    history: Dict[str, List[float]]
    eval_loss: float
    eval_accuracy: float
    unfrozen_variables: List[str] = dataclasses.field(default_factory=list)
    train_examples: int = 0

    def better_than(self, other: Optional["StageResult"]) -> bool:
        return other is None or (self.eval_accuracy, -self.eval_loss) >= (other.eval_accuracy, -other.eval_loss)


class ProgressLogger(tf_keras.callbacks.Callback):
    """One log line per epoch: Keras' own progress bars are unreadable in pipeline logs."""

    def __init__(self, stage: str, epochs: int):
        super().__init__()
        self._stage, self._epochs = stage, epochs

    def on_epoch_end(self, epoch, logs=None):
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
        logging.info("[%s] epoch %d/%d %s", self._stage, epoch + 1, self._epochs, metrics)


def cached_features(images_and_labels: tf.data.Dataset, backbone, cache_file: str, split: str):
    """Runs the backbone once over the split, caching (features, label) per example in `cache_file`.

    Returns the cached dataset (later passes read the file, not the backbone) and the example count.
    """
    features = (images_and_labels
                .map(lambda images, labels: (backbone(images, training=False), labels))
                .unbatch()
                .cache(cache_file))
    count, started = 0, time.monotonic()
    for batch, _ in features.batch(_FEATURE_LOG_EVERY):
        count += int(batch.shape[0])
        logging.info("[stage 1] %s features: %d images (%.1f images/s)", split, count,
                     count / max(time.monotonic() - started, 1e-9))
    return features, count


def _history(keras_history) -> Dict[str, List[float]]:
    return {k: [float(x) for x in v] for k, v in keras_history.history.items()}


def train_head(train: tf.data.Dataset, evaluation: tf.data.Dataset, backbone, head: tf_keras.Model,
               params: TrainingParams, work_dir: str, log_dir: str) -> StageResult:
    """Stage 1: frozen backbone, features cached once, head trained with early stopping on eval loss."""
    train_features, train_examples = cached_features(train, backbone, os.path.join(work_dir, "train"), "train")
    eval_features, _ = cached_features(evaluation, backbone, os.path.join(work_dir, "eval"), "eval")
    eval_features = eval_features.batch(params.batch_size)
    train_batches = train_features.shuffle(_SHUFFLE_BUFFER, seed=params.seed).batch(params.batch_size)

    model.compile_classifier(head, params.stage1_learning_rate)
    history = head.fit(
        train_batches,
        validation_data=eval_features,
        epochs=params.stage1_epochs,
        verbose=0,
        callbacks=[
            tf_keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.early_stopping_patience,
                                             restore_best_weights=True),
            tf_keras.callbacks.TensorBoard(os.path.join(log_dir, "stage1")),
            ProgressLogger("stage 1", params.stage1_epochs),
        ],
    )
    loss, accuracy = head.evaluate(eval_features, verbose=0)
    return StageResult("stage1", _history(history), float(loss), float(accuracy), train_examples=train_examples)


def _warmup_cosine(peak: float, total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))
    return tf_keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 100, decay_steps=max(1, total_steps - warmup), alpha=0.0,
        warmup_target=peak, warmup_steps=warmup)


def fine_tune(train: tf.data.Dataset, evaluation: tf.data.Dataset, classifier: tf_keras.Model,
              unfrozen: List[str], params: TrainingParams, steps_per_epoch: int, log_dir: str) -> StageResult:
    """Stage 2: trains the unfrozen top of the backbone and the head together, starting from stage 1's head."""
    if params.augment:
        train = train.map(lambda images, labels: (data.augment(images, params.seed), labels),
                          num_parallel_calls=tf.data.AUTOTUNE)
    schedule = _warmup_cosine(params.stage2_learning_rate, steps_per_epoch * params.stage2_epochs,
                              params.warmup_fraction)
    model.compile_classifier(classifier, schedule)
    history = classifier.fit(
        train.prefetch(tf.data.AUTOTUNE),
        validation_data=evaluation,
        epochs=params.stage2_epochs,
        verbose=0,
        callbacks=[tf_keras.callbacks.TensorBoard(os.path.join(log_dir, "stage2")),
                   ProgressLogger("stage 2", params.stage2_epochs)],
    )
    loss, accuracy = classifier.evaluate(evaluation, verbose=0)
    return StageResult("stage2", _history(history), float(loss), float(accuracy), unfrozen)
