"""The two training stages.

Stage 1 trains only the head, on backbone features computed once per example and kept in memory (in a temporary
file when large: bounded memory), so many head epochs cost about one backbone pass. Stage 2 unfreezes the top
blocks of the backbone and fine-tunes at a low, warmed-up and decaying learning rate; BatchNorm statistics stay
frozen (the module runs its BatchNorm in inference mode). The better stage by eval accuracy (then loss) is kept.
"""
import dataclasses
import logging
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from components.trainer import data, model
from components.trainer.params import TrainingParams

_SHUFFLE_BUFFER = 2048
_FEATURE_LOG_EVERY = 256  # images between progress lines
_IMAGE_SHUFFLE_BUFFER = 256  # decoded images are ~600 kB each at 224x224
_PREFETCH_BATCHES = 2  # augmentation of the next batches overlaps the current training step
# Cached features or decoded images up to this size stay in memory; larger ones stream from a temporary file.
IN_MEMORY_BYTES = 1 << 30


@dataclasses.dataclass
class StageResult:
    name: str
    history: Dict[str, List[float]]
    eval_loss: float
    eval_accuracy: float
    unfrozen_variables: List[str] = dataclasses.field(default_factory=list)
    train_examples: int = 0
    train_seconds_per_epoch: List[float] = dataclasses.field(default_factory=list)

    def better_than(self, other: Optional["StageResult"]) -> bool:
        return other is None or (self.eval_accuracy, -self.eval_loss) >= (other.eval_accuracy, -other.eval_loss)


class ProgressLogger(tf_keras.callbacks.Callback):
    """One log line per epoch (Keras' progress bars are unreadable in pipeline logs), with the training part's
    duration: validation is excluded so the seconds measure the training input pipeline and steps."""

    def __init__(self, stage: str, epochs: int):
        super().__init__()
        self._stage, self._epochs = stage, epochs
        self._started = None
        self.train_seconds: List[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def _record_training_time(self):
        if self._started is not None:  # once per epoch; evaluate() outside fit() has no epoch to time
            self.train_seconds.append(time.perf_counter() - self._started)
            self._started = None

    def on_test_begin(self, logs=None):
        self._record_training_time()

    def on_epoch_end(self, epoch, logs=None):
        self._record_training_time()
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
        logging.info("[%s] epoch %d/%d %s (training %.1f s)", self._stage, epoch + 1, self._epochs, metrics,
                     self.train_seconds[-1])


# Mean cross-entropy in nats. A uniform guess over 10000 classes scores 9.2; a mean above 100 puts e^-100 on the
# true class, which only diverged weights produce (an Adam learning rate of 1e3 gets there, often without a NaN).
DIVERGED_LOSS = 100.0


class TrainingDivergedError(ValueError):
    """The training loss became NaN, infinite or absurdly large: the model is unusable, so the Trainer fails and
    nothing is pushed."""


class FailOnDivergence(tf_keras.callbacks.Callback):
    """Fails training at the first diverged batch loss, with advice; Keras' TerminateOnNaN only stops quietly,
    after which the half-trained model would be exported."""

    def __init__(self, stage: str, learning_rate_flag: str, learning_rate: float):
        super().__init__()
        self._stage, self._flag, self._learning_rate = stage, learning_rate_flag, learning_rate
        self._epoch = 0
        # Tensor logs: otherwise Keras converts every metric to Python after every batch for this one check.
        self._supports_tf_logs = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not float(loss) <= DIVERGED_LOSS:  # also true for NaN
            raise TrainingDivergedError(
                f"loss became {float(loss):g} in {self._stage} at epoch {self._epoch + 1}, batch {batch + 1}: "
                f"training diverged. Lower the learning rate ({self._flag}, now {self._learning_rate:g}) and rerun; "
                "nothing was pushed.")


def without_autotuning(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """The dataset with tf.data's autotuning off, for input that feeds the backbone.

    Measured ad hoc on a 2-core CPU VM (not part of the benchmark): a backbone pass over an autotuned pipeline ran
    on one core in about 4 of 10 passes (same CPU time, 1.6x the wall time, the other core idle); with autotuning
    off, 20 of 20 passes used both.
    Parallel maps still use as many threads as there are cores.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def feature_extractor(backbone, image_spec: tf.TensorSpec):
    """The frozen backbone as one tf.function for every split and batch size.

    The signature leaves the batch dimension open, so the eval split and a last, smaller batch reuse the one trace
    instead of tracing the Hub module again (about half a second each time for EfficientNet-Lite0). The
    backbone runs in a plain tf.function, not inside tf.data: tracing a Hub module in a dataset map is slow, and a
    distribution strategy can place a tf.function call but not a dataset map.
    """
    spec = tf.TensorSpec([None, *image_spec.shape[1:]], image_spec.dtype)
    return tf.function(lambda images: backbone(images, training=False), input_signature=[spec], autograph=False)


class _FeatureStore:
    """Collects (features, label) batches in memory, moving them to a TFRecord file once they exceed
    IN_MEMORY_BYTES, so memory stays bounded for any dataset size."""

    def __init__(self, path: str):
        self._path = path
        self._chunks: List[tuple] = []
        self._bytes = 0
        self._writer = None
        self.count, self.dim = 0, None

    def add(self, features: np.ndarray, labels: np.ndarray) -> None:
        self.count += len(features)
        self.dim = features.shape[-1]
        if self._writer is None:
            self._chunks.append((features, labels))
            self._bytes += features.nbytes
            if self._bytes <= IN_MEMORY_BYTES:
                return
            self._writer = tf.io.TFRecordWriter(self._path)
            chunks, self._chunks = self._chunks, []
        else:
            chunks = [(features, labels)]
        for chunk_features, chunk_labels in chunks:
            for vector, label in zip(chunk_features, chunk_labels):
                self._writer.write(_feature_example(vector, label))

    def dataset(self) -> tf.data.Dataset:
        """One pass over the stored (features, label) pairs."""
        if self._writer is None:
            return tf.data.Dataset.from_tensor_slices((np.concatenate([f for f, _ in self._chunks]),
                                                       np.concatenate([y for _, y in self._chunks])))
        self._writer.close()
        spec = {"features": tf.io.FixedLenFeature([self.dim], tf.float32),
                "label": tf.io.FixedLenFeature([], tf.int64)}

        def parse(record):
            parsed = tf.io.parse_single_example(record, spec)
            return parsed["features"], parsed["label"]

        return tf.data.TFRecordDataset(self._path).map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def cached_features(images_and_labels: tf.data.Dataset, extract, cache_dir: str, split: str):
    """Runs the backbone (`extract`, see feature_extractor) once over the split and keeps (features, label) per
    example: in memory when small, else in a TFRecord file.

    Returns a dataset over the kept features (later epochs never touch the backbone) and the example count.
    """
    store = _FeatureStore(os.path.join(cache_dir, f"{split}_features.tfrecord"))
    started = time.monotonic()
    for images, labels in without_autotuning(images_and_labels):
        store.add(extract(images).numpy(), labels.numpy().astype(np.int64))
        if store.count // _FEATURE_LOG_EVERY != (store.count - len(labels)) // _FEATURE_LOG_EVERY:
            _log_feature_progress(split, store.count, started)
    _log_feature_progress(split, store.count, started)
    if not store.count:
        raise ValueError(f"The {split} split has no examples; check the eval_percent and the data folder.")
    return store.dataset(), store.count


def _feature_example(vector: np.ndarray, label: int) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "features": tf.train.Feature(float_list=tf.train.FloatList(value=vector)),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    })).SerializeToString()


def _log_feature_progress(split: str, count: int, started: float) -> None:
    logging.info("[stage 1] %s features: %d images (%.1f images/s)", split, count,
                 count / max(time.monotonic() - started, 1e-9))


def _history(keras_history) -> Dict[str, List[float]]:
    return {k: [float(x) for x in v] for k, v in keras_history.history.items()}


def train_head(train: tf.data.Dataset, evaluation: tf.data.Dataset, backbone, head: tf_keras.Model,
               params: TrainingParams, work_dir: str, log_dir: str) -> StageResult:
    """Stage 1: frozen backbone, features cached once, head trained with early stopping on eval loss."""
    extract = feature_extractor(backbone, train.element_spec[0])
    train_features, train_examples = cached_features(train, extract, work_dir, "train")
    eval_features, _ = cached_features(evaluation, extract, work_dir, "eval")
    eval_features = eval_features.batch(params.batch_size)
    train_batches = train_features.shuffle(_SHUFFLE_BUFFER, seed=params.seed).batch(params.batch_size)

    head.build((None, *train_features.element_spec[0].shape))
    model.compile_classifier(head, params.stage1_learning_rate)
    early_stopping = tf_keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True)
    history = head.fit(
        train_batches,
        validation_data=eval_features,
        epochs=params.stage1_epochs,
        verbose=0,
        callbacks=[early_stopping, tf_keras.callbacks.TensorBoard(os.path.join(log_dir, "stage1")),
                   ProgressLogger("stage 1", params.stage1_epochs),
                   FailOnDivergence("stage 1", "--stage1-learning-rate", params.stage1_learning_rate)],
    )
    # The restored weights are the best epoch's, whose eval metrics are already in the history.
    curves = _history(history)
    best = early_stopping.best_epoch
    return StageResult("stage1", curves, curves["val_loss"][best], curves["val_accuracy"][best],
                       train_examples=train_examples)


def _warmup_cosine(peak: float, total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))
    return tf_keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 100, decay_steps=max(1, total_steps - warmup), alpha=0.0,
        warmup_target=peak, warmup_steps=warmup)


def cached_images(train: tf.data.Dataset, examples: int, batch_size: int, seed: int,
                  cache_dir: Optional[str]) -> tf.data.Dataset:
    """The decoded (transformed) training images, decoded in the first epoch only and reshuffled every epoch.

    Decoding and resizing every epoch would make the input pipeline, not the backbone, the bottleneck on CPU.
    """
    height, width, channels = train.element_spec[0].shape[1:]
    in_memory = examples * height * width * channels * 4 <= IN_MEMORY_BYTES
    if not in_memory and cache_dir is None:
        return train
    cached = train.unbatch().cache("" if in_memory else os.path.join(cache_dir, "stage2_images"))
    return cached.shuffle(_IMAGE_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).batch(batch_size)


def fine_tune(train: tf.data.Dataset, evaluation: tf.data.Dataset, classifier: tf_keras.Model,
              unfrozen: List[str], params: TrainingParams, steps_per_epoch: int, log_dir: str,
              cache_dir: Optional[str] = None,
              extra_callbacks: Sequence[tf_keras.callbacks.Callback] = ()) -> StageResult:
    """Stage 2: trains the unfrozen top of the backbone and the head together, starting from stage 1's head.

    extra_callbacks run after the stage's own (the trainer benchmark times a baseline between epochs with one).
    """
    train = cached_images(train, steps_per_epoch * params.batch_size, params.batch_size, params.seed, cache_dir)
    evaluation = without_autotuning(evaluation)
    if params.augment:
        train = train.map(lambda images, labels: (data.augment(images, params.seed), labels),
                          num_parallel_calls=tf.data.AUTOTUNE)
    schedule = _warmup_cosine(params.stage2_learning_rate, steps_per_epoch * params.stage2_epochs,
                              params.warmup_fraction)
    model.compile_classifier(classifier, schedule)
    progress = ProgressLogger("stage 2", params.stage2_epochs)
    history = classifier.fit(
        without_autotuning(train.prefetch(_PREFETCH_BATCHES)),
        validation_data=evaluation,
        epochs=params.stage2_epochs,
        verbose=0,
        callbacks=[tf_keras.callbacks.TensorBoard(os.path.join(log_dir, "stage2")), progress,
                   FailOnDivergence("stage 2", "--stage2-learning-rate", params.stage2_learning_rate),
                   *extra_callbacks],
    )
    loss, accuracy = classifier.evaluate(evaluation, verbose=0)
    return StageResult("stage2", _history(history), float(loss), float(accuracy), unfrozen,
                       train_seconds_per_epoch=progress.train_seconds)
