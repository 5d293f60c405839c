"""The two training stages, and the validation scheme: every choice uses the train split only.

Stage 1 (components/trainer/head.py) fits the head as a linear probe on frozen backbone features computed once
per example; stratified k-fold cross-validation on the training features chooses its L2 strength and feature
levels. Stage 2 fine-tunes the top blocks of the backbone together with the head. Whether stage 2 is kept is
judged on a *validation slice* carved from the training split (stratified, `validation_fraction` of each class):
the head is refitted on the rest (the fitting slice), fine-tuning runs on the fitting slice with the validation
loss read after every epoch, the best epoch's weights are restored, and stage 2 is kept only if some epoch beat
stage 1's validation loss on the same slice. A validation loss that blows up (or a NaN) stops stage 2 and rolls
back to stage 1, so a collapsed model never reaches the Evaluator. The eval split is never read here: it belongs
to the Evaluator and the report.
"""
import contextlib
import dataclasses
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from hubtfx.components.common.contract import DEFAULT_LEVEL
from hubtfx.components.modality import registry as modalities
from hubtfx.components.trainer import model, progress
from hubtfx.components.trainer import head as head_lib
from hubtfx.components.trainer.params import TrainingParams

_FEATURE_LOG_EVERY = 256  # images between progress lines
_IMAGE_SHUFFLE_BUFFER = 256  # decoded images are ~600 kB each at 224x224
_PREFETCH_BATCHES = 2  # augmentation of the next batches overlaps the current training step
# Decoded training images up to this size stay in memory for stage 2; beyond it they are decoded every epoch.
IN_MEMORY_BYTES = 1 << 30
# Mean cross-entropy in nats. A uniform guess over 10000 classes scores 9.2; a mean above 100 puts e^-100 on the
# true class, which only diverged weights produce (an Adam learning rate of 1e3 gets there, often without a NaN).
DIVERGED_LOSS = 100.0
# Stage 2 is rolled back at once when its validation loss exceeds stage 1's by this factor: fine-tuning at a sane
# learning rate moves it by a few per cent per epoch; a jump like this is the collapse seen with SGD at 3e-3.
BLOWUP_FACTOR = 3.0
# What "validation loss" means below: the held-out cross-entropy, comparable with stage 1's (Keras' val_loss also
# holds the head's L2 penalty).
VALIDATION_CROSS_ENTROPY = "val_" + model.CROSS_ENTROPY


@dataclasses.dataclass
class StageResult:
    """What a stage did. validation_* are on the validation slice (stage 2 and stage 1's reference there)."""

    name: str
    history: Dict[str, List[float]] = dataclasses.field(default_factory=dict)
    validation_loss: Optional[float] = None
    validation_accuracy: Optional[float] = None
    unfrozen_variables: List[str] = dataclasses.field(default_factory=list)
    train_examples: int = 0
    validation_examples: int = 0
    best_epoch: int = 0  # 0: no epoch beat stage 1 (the stage was not kept)
    outcome: str = ""  # why the stage was kept, skipped or rolled back
    sign_test: Optional["SignTest"] = None  # stage 2 vs stage 1 on the validation slice, when an epoch beat it
    seconds: float = 0.0  # wall time of the stage (stage 1: feature pass and head fit)
    train_seconds_per_epoch: List[float] = dataclasses.field(default_factory=list)


class ProgressLogger(tf_keras.callbacks.Callback):
    """One log line per epoch (Keras' progress bars are unreadable in pipeline logs), with the training part's
    duration: validation is excluded so the seconds measure the training input pipeline and steps.

    On a terminal (progress.bars_wanted) a bar over the epochs also counts the current epoch's batches, so a long
    epoch shows that it moves; the epoch lines are written above it. Elsewhere the lines are all there is.
    """

    def __init__(self, stage: str, epochs: int):
        super().__init__()
        self._stage, self._epochs = stage, epochs
        self._started = None
        self._bar = None
        self.train_seconds: List[float] = []
        # The batch hook reads only the batch index: Keras need not convert the batch's metrics to Python for it.
        self._supports_tf_logs = True

    def on_train_begin(self, logs=None):
        if progress.bars_wanted():
            self._bar = progress.bar(self._epochs, f"[{self._stage}]", "epoch")

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            steps = self.params.get("steps") if self.params else None  # None when the dataset's size is unknown
            self._bar.set_postfix_str(f"batch {batch + 1}" + (f"/{steps}" if steps else ""), refresh=False)
            self._bar.update(0)  # redraws at most every tenth of a second

    def _record_training_time(self):
        if self._started is not None:  # once per epoch; evaluate() outside fit() has no epoch to time
            self.train_seconds.append(time.perf_counter() - self._started)
            self._started = None

    def on_test_begin(self, logs=None):
        self._record_training_time()

    def on_epoch_end(self, epoch, logs=None):
        self._record_training_time()
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
        # On a terminal the line goes above the bar instead of through it.
        with self._bar.external_write_mode(file=sys.stderr) if self._bar is not None else contextlib.nullcontext():
            logging.info("[%s] epoch %d/%d %s (training %.1f s)", self._stage, epoch + 1, self._epochs, metrics,
                         self.train_seconds[-1])
        if self._bar is not None:
            self._bar.update(1)

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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


def feature_extractor(backbone, input_spec, backbone_input=None, levels: Optional[Sequence[str]] = None):
    """The frozen backbone as one tf.function for every batch size: model inputs -> features, or a dict of levels.

    input_spec: the model input's tf.TensorSpec [batch, ...] or a dict of them (the dataset's element_spec[0]).
    backbone_input: Modality.backbone_input (the input itself when None). levels: the outputs kept when the backbone
    returns a dict (a text encoder's also holds its sequence outputs, which stage 1 does not use); None: all.
    The signature leaves the batch dimension open, so a last, smaller batch reuses the one trace instead of
    tracing the Hub module again (about half a second each time for EfficientNet-Lite0). The backbone runs in a
    plain tf.function, not inside tf.data: tracing a Hub module in a dataset map is slow, and a distribution
    strategy can place a tf.function call but not a dataset map.
    """
    spec = tf.nest.map_structure(lambda s: tf.TensorSpec([None, *s.shape[1:]], s.dtype), input_spec)
    adapt = backbone_input or (lambda inputs: inputs)

    def extract(inputs):
        outputs = backbone(adapt(inputs), training=False)
        if isinstance(outputs, dict) and levels is not None:
            return {name: outputs[name] for name in levels}
        return outputs

    return tf.function(extract, input_signature=[spec], autograph=False)


def extract_features(images_and_labels: tf.data.Dataset, extract, split: str = "train") -> head_lib.Features:
    """Runs the backbone (`extract`, see feature_extractor) once over the split, in the dataset's order.

    Returns every level's features (float32 [n, channels]; "default" only for a module without levels) and the
    labels (int64 [n]), kept in memory: about 8.5 kB per image for EfficientNet-Lite0's 2128 channels.

    Raises:
      ValueError: the split has no examples.
    """
    chunks: Dict[str, List[np.ndarray]] = {}
    labels: List[np.ndarray] = []
    count, started = 0, time.monotonic()
    # On a terminal a bar counts the examples; elsewhere a log line every _FEATURE_LOG_EVERY images does.
    with progress.bar(None, f"[stage 1] {split} features", "example") as bar:
        for images, batch_labels in without_autotuning(images_and_labels):
            outputs = extract(images)
            for name, value in (outputs.items() if isinstance(outputs, dict) else [(DEFAULT_LEVEL, outputs)]):
                chunks.setdefault(name, []).append(value.numpy())
            labels.append(batch_labels.numpy().astype(np.int64))
            count += len(labels[-1])
            bar.update(len(labels[-1]))
            if bar.disable and count // _FEATURE_LOG_EVERY != (count - len(labels[-1])) // _FEATURE_LOG_EVERY:
                _log_feature_progress(split, count, started)
    _log_feature_progress(split, count, started)
    if not count:
        raise ValueError(f"The {split} split has no examples; check the eval_percent and the data folder.")
    return head_lib.Features({name: np.concatenate(parts) for name, parts in chunks.items()}, np.concatenate(labels))


def _log_feature_progress(split: str, count: int, started: float) -> None:
    logging.info("[stage 1] %s features: %d examples (%.1f examples/s)", split, count,
                 count / max(time.monotonic() - started, 1e-9))


def validation_rows(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified validation slice of the training split: bool [n], True for held-out rows.

    Each class holds out round(fraction * count) of its examples, chosen with `seed`, but always keeps at least
    two for fitting; a class with fewer than three examples holds out none.
    """
    rng = np.random.default_rng(seed)
    held_out = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        count = min(int(round(fraction * len(rows))), len(rows) - 2)
        if count > 0:
            held_out[rng.choice(rows, count, replace=False)] = True
    return held_out


def softmax_metrics(logits: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Mean cross-entropy (nats) and accuracy of logits float [n, classes] against labels int [n]."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {"loss": float(-log_probabilities[np.arange(len(labels)), labels].mean()),
            "accuracy": float((logits.argmax(axis=1) == labels).mean())}


@dataclasses.dataclass(frozen=True)
class SignTest:
    """Stage 2 against stage 1 on the same validation images: McNemar's exact test, one-sided.

    fixed: images stage 1 got wrong and stage 2 right; broken: the reverse. Under "fine-tuning does not help",
    each of the fixed + broken discordant images is a fair coin, so p = P(Binomial(fixed + broken, 1/2) >= fixed)
    (scipy.stats.binomtest; McNemar 1947, exact form). Images both get right or both get wrong carry no
    information about which is better.
    """

    fixed: int
    broken: int

    @property
    def p_value(self) -> float:
        from scipy import stats  # scikit-learn's dependency; imported here to keep TF-only imports light
        if self.fixed + self.broken == 0:
            return 1.0
        return float(stats.binomtest(self.fixed, self.fixed + self.broken, 0.5, alternative="greater").pvalue)

    @classmethod
    def compare(cls, stage1_predicted: np.ndarray, stage2_predicted: np.ndarray, labels: np.ndarray) -> "SignTest":
        """Class ids int [n] of both stages and the true labels int [n]."""
        right1, right2 = stage1_predicted == labels, stage2_predicted == labels
        return cls(fixed=int(np.sum(right2 & ~right1)), broken=int(np.sum(right1 & ~right2)))

    @staticmethod
    def could_reach(stage1_errors: int, significance: float) -> bool:
        """Whether any stage 2 could pass at `significance`: the best case fixes every stage-1 error and breaks
        nothing, p = 0.5 ** errors."""
        return 0.5 ** stage1_errors <= significance


def judge_by_sign_test(stage2: StageResult, stage1_predicted: np.ndarray, stage2_predicted: np.ndarray,
                       labels: np.ndarray, significance: float) -> None:
    """Keeps stage 2's best epoch only if it beats stage 1 on the validation slice by the sign test.

    Class ids int [n] of stage 1, of stage 2's best epoch and the true labels. Sets stage2.sign_test and, when
    p > significance, best_epoch 0 (stage 1 is exported) with the counts in the outcome. With 1-4 validation images
    per class, a lower validation loss alone was noise: stage 2 then lowered test accuracy as often as it raised it
    (README, "Training quality on real data").
    """
    test = SignTest.compare(stage1_predicted, stage2_predicted, labels)
    stage2.sign_test = test
    counts = f"fixed {test.fixed} and broke {test.broken} of stage 1's {len(labels)} validation predictions"
    p_value = test.p_value
    if p_value > significance:
        stage2.outcome = (f"not kept: its best epoch ({stage2.best_epoch}) {counts}, sign-test p {p_value:.3f} "
                          f"> stage2_significance {significance:g}")
        stage2.best_epoch = 0
    else:
        stage2.outcome += f"; it {counts} (sign-test p {p_value:.3f})"


class KeepBestOnValidation(tf_keras.callbacks.Callback):
    """Early stopping with restore-best and rollback, measured against stage 1 on the same validation slice.

    Epoch 0 is stage 1 itself (reference {"loss", "accuracy"}, with the weights the model has when training
    starts). An epoch beats the best so far when its validation loss is lower and its validation accuracy is no
    lower than stage 1's: a lower loss alone can come from curing an over-confident head while classifying worse.
    Training stops after `patience` epochs without such an epoch, at once when the loss diverges (a batch loss
    that is NaN, infinite or above DIVERGED_LOSS, or a validation loss above BLOWUP_FACTOR x the reference), and
    the weights of the best epoch are restored at the end: stage 1's if no epoch beat it.
    """

    def __init__(self, reference: Dict[str, float], patience: int):
        super().__init__()
        self.best_loss, self.best_epoch = reference["loss"], 0
        self._reference_loss, self._reference_accuracy = reference["loss"], reference["accuracy"]
        self._patience = patience
        self._best_weights = None
        self.stopped_because = ""
        # Tensor logs: otherwise Keras converts every metric to Python after every batch for this one check.
        self._supports_tf_logs = True

    def on_train_begin(self, logs=None):
        self._best_weights = self.model.get_weights()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not float(loss) <= DIVERGED_LOSS:  # also true for NaN
            self.stopped_because = f"the training loss diverged ({float(loss):g}) at batch {batch + 1}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get(VALIDATION_CROSS_ENTROPY, float("nan")))
        accuracy = float((logs or {}).get("val_accuracy", 0.0))
        if self.stopped_because:
            return
        if not loss <= BLOWUP_FACTOR * self._reference_loss:
            self.stopped_because = (f"the validation loss blew up to {loss:g} at epoch {epoch + 1} "
                                    f"(stage 1: {self._reference_loss:.4f})")
            self.model.stop_training = True
        elif loss < self.best_loss - 1e-4 and accuracy >= self._reference_accuracy:
            self.best_loss, self.best_epoch = loss, epoch + 1
            self._best_weights = self.model.get_weights()
        elif epoch + 1 - self.best_epoch >= self._patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.model.set_weights(self._best_weights)


def _history(keras_history) -> Dict[str, List[float]]:
    return {k: [float(x) for x in v] for k, v in keras_history.history.items()}


def _warmup_cosine(peak: float, total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))
    return tf_keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 100, decay_steps=max(1, total_steps - warmup), alpha=0.0,
        warmup_target=peak, warmup_steps=warmup)


def class_grouping(labels: np.ndarray, window: int = _IMAGE_SHUFFLE_BUFFER, seed: int = 0) -> float:
    """How far `labels` (int >= 0 [n], in reading order) are from a random order towards an order by class, as seen
    through consecutive `window`-example stretches, which is what a shuffle buffer of `window` examples draws
    from: 1 for an order by class, about 0 for a shuffled one, whatever the number and balance of the classes.

    The measure of a stretch is the total-variation distance of its class mix from the whole's; an order's is the
    mean over its whole stretches, and the result is (order - random order) / (order by class - random order).
    0 with fewer than two stretches (a buffer over half of the examples or more mixes them well enough) or where
    stretches of an order by class are mixed about as well as random ones (a class or two, or many tiny classes).
    """
    labels = np.asarray(labels)
    if len(labels) < 2 * window:
        return 0.0
    overall = np.bincount(labels) / len(labels)

    def mean_distance(order: np.ndarray) -> float:
        stretches = order[: len(order) // window * window].reshape(-1, window)
        mixes = np.stack([np.bincount(stretch, minlength=len(overall)) / window for stretch in stretches])
        return float(0.5 * np.abs(mixes - overall).sum(axis=1).mean())

    rng = np.random.default_rng(seed)
    random_order = float(np.mean([mean_distance(rng.permutation(labels)) for _ in range(_RANDOM_ORDERS)]))
    span = mean_distance(np.sort(labels, kind="stable")) - random_order
    if span < 0.05:
        return 0.0
    return (mean_distance(labels) - random_order) / span


_RANDOM_ORDERS = 4  # random orders class_grouping averages as its 0
# class_grouping above which stage 2 warns that its shuffle buffer cannot mix the fitting slice.
GROUPED_BY_CLASS = 0.5


def split_images(train: tf.data.Dataset, held_out: np.ndarray, batch_size: int, seed: int):
    """(fitting batches, reshuffled every epoch; validation batches) of the decoded training examples (images, or
    tokenized texts).

    `train` must yield the examples in the order held_out refers to (the order extract_features saw). Each
    slice is decoded once and kept in memory when it fits in IN_MEMORY_BYTES (decoding every epoch would make
    the input pipeline, not the backbone, the bottleneck on CPU); larger ones are decoded again each epoch.
    """
    example_bytes = sum(int(np.prod(spec.shape[1:])) * spec.dtype.size for spec in tf.nest.flatten(train.element_spec[0]))
    in_memory = len(held_out) * example_bytes <= IN_MEMORY_BYTES
    mask = tf.constant(held_out)
    indexed = train.unbatch().enumerate()

    def rows(validation: bool) -> tf.data.Dataset:
        chosen = indexed.filter(lambda index, example: tf.equal(tf.gather(mask, index), validation))
        chosen = chosen.map(lambda index, example: example)
        return chosen.cache() if in_memory else chosen

    fitting = rows(False).shuffle(_IMAGE_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    return fitting.batch(batch_size), rows(True).batch(batch_size)


def fine_tune(fitting: tf.data.Dataset, validation: tf.data.Dataset, classifier: tf_keras.Model,
              unfrozen: List[str], params: TrainingParams, steps_per_epoch: int, reference: Dict[str, float],
              log_dir: str, extra_callbacks: Sequence[tf_keras.callbacks.Callback] = (),
              modality=None) -> StageResult:
    """Stage 2: trains the unfrozen top of the backbone and the head together, from stage 1's head.

    reference: stage 1's {"loss", "accuracy"} on the validation slice. Returns the result with best_epoch 0 when
    no epoch beat it (the classifier then holds stage 1's weights again). extra_callbacks run after the stage's
    own (the trainer benchmark times a baseline between epochs with one). modality: the Modality whose `augment`
    alters the fitting batches when params.augment (image when None).
    """
    validation = without_autotuning(validation)
    if params.augment:
        augment = (modality or modalities.default_modality()).augment
        fitting = fitting.map(lambda images, labels: (augment(images, params.seed), labels),
                              num_parallel_calls=tf.data.AUTOTUNE)
    schedule = _warmup_cosine(params.stage2_learning_rate, steps_per_epoch * params.stage2_epochs,
                              params.warmup_fraction)
    model.compile_classifier(classifier, schedule)
    progress = ProgressLogger("stage 2", params.stage2_epochs)
    keep_best = KeepBestOnValidation(reference, params.stage2_patience)
    history = classifier.fit(
        without_autotuning(fitting.prefetch(_PREFETCH_BATCHES)),
        validation_data=validation,
        epochs=params.stage2_epochs,
        verbose=0,
        callbacks=[tf_keras.callbacks.TensorBoard(os.path.join(log_dir, "stage2")), progress, keep_best,
                   *extra_callbacks],
    )
    curves = _history(history)
    if keep_best.best_epoch:
        best = keep_best.best_epoch - 1
        loss, accuracy = curves[VALIDATION_CROSS_ENTROPY][best], curves["val_accuracy"][best]
        outcome = (f"kept: validation loss {loss:.4f} at epoch {keep_best.best_epoch} beat stage 1's "
                   f"{reference['loss']:.4f}")
    else:
        # What stage 2 reached at its lowest validation loss, though stage 1 is what is kept.
        losses = [v if np.isfinite(v) else float("inf") for v in curves.get(VALIDATION_CROSS_ENTROPY, [])]
        best = int(np.argmin(losses)) if losses else None
        loss = curves[VALIDATION_CROSS_ENTROPY][best] if best is not None else float("nan")
        accuracy = curves["val_accuracy"][best] if best is not None else float("nan")
        outcome = ("rolled back to stage 1: " + keep_best.stopped_because + "; lower --stage2-learning-rate"
                   if keep_best.stopped_because else
                   f"not kept: no epoch beat stage 1's validation loss {reference['loss']:.4f} at an accuracy "
                   f"of at least its {reference['accuracy']:.3f}")
    if keep_best.stopped_because:
        logging.warning("[stage 2] stopped: %s", keep_best.stopped_because)
    return StageResult("stage2", curves, loss, accuracy, unfrozen, best_epoch=keep_best.best_epoch,
                       outcome=outcome, train_seconds_per_epoch=progress.train_seconds)
