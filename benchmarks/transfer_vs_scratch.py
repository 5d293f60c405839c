"""Transfer learning vs training from scratch, at k training images per class (issue 7, item 1).

For every k and seed, on the synthetic sample data (shapes in clutter):
  (a) stage 1: the Trainer's head on frozen EfficientNet-Lite0 features;
  (b) stage 1 + stage 2: the model the Trainer exports (stage 2's fine-tuning, kept only if it beat stage 1 on
      a validation slice of the training images);
  (c) scratch: a small CNN (four conv blocks) with the same head type, trained from random weights on the
      same images, with the same augmentation, for as many wall-clock seconds as (b) took in total.
All three are scored on one fixed eval set, drawn with a seed no training set uses. The Trainer never sees it;
the scratch CNN keeps its epoch of lowest eval loss, a choice made in its favour. The scratch CNN sees 64x64 images, a choice made in its favour (not compared with 224x224 here): fewer
pixels to overfit and more epochs in its budget; the shapes are 36-80% of the short side, so 64x64 still shows
their outline.

Usage: python -m benchmarks.transfer_vs_scratch [--quick] [--json FILE] [--plot FILE]
(--quick uses the tiny test module, k = 2 and 4, two seeds; CI runs it so the script cannot rot.)
"""
import dataclasses
import glob
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from hubtfx.components.common import contract as module_contract  # noqa: E402
from hubtfx.components.trainer import data, model, run as trainer_run  # noqa: E402
from hubtfx.components.trainer.params import TrainingParams  # noqa: E402
from hubtfx.components.transform import image_ops  # noqa: E402
from hubtfx.pipeline.datasets import sample_data  # noqa: E402
from hubtfx.pipeline.hub_modules import builder, tiny  # noqa: E402
from benchmarks import common  # noqa: E402

VARIANTS = ("stage1", "stage1+2", "scratch")
EVAL_SEED = 1000  # training sets use seeds 0, 1, 2: no eval image is also a training image
SCRATCH_LEARNING_RATE = 1e-3
SCRATCH_DROPOUT = 0.2
SATURATED_ACCURACY = 0.95  # scratch this good at the largest k leaves transfer learning nothing to show


@dataclasses.dataclass(frozen=True)
class Settings:
    ks: Tuple[int, ...]
    seeds: Tuple[int, ...]
    eval_per_class: int
    scratch_size: int
    params: TrainingParams


FULL = Settings(ks=(5, 10, 20, 50), seeds=(0, 1, 2), eval_per_class=20, scratch_size=64, params=TrainingParams())
QUICK = Settings(ks=(2, 4), seeds=(0, 1), eval_per_class=3, scratch_size=32,
                 params=TrainingParams(stage2_epochs=1, batch_size=8, min_validation_examples=2, cv_folds=2))


@dataclasses.dataclass
class Images:
    contents: List[bytes]  # encoded files, as ExampleGen stores them
    labels: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(set(self.labels.tolist()))


def generate_images(root: str, per_class: int, seed: int) -> Images:
    sample_data.generate_dataset(root, images_per_class=per_class, seed=seed)
    classes = sorted(os.listdir(root))
    files = sorted(glob.glob(os.path.join(root, "*", "*")))
    labels = np.array([classes.index(os.path.basename(os.path.dirname(f))) for f in files], dtype=np.int64)
    return Images([open(f, "rb").read() for f in files], labels)


def first_per_class(images: Images, k: int) -> Images:
    """The first k images of each class: a seed's training sets are nested, so a larger k only adds images."""
    chosen = [i for i, label in enumerate(images.labels) if np.sum(images.labels[:i] == label) < k]
    return Images([images.contents[i] for i in chosen], images.labels[chosen])


def decoded(images: Images, size: Tuple[int, int], batch_size: int, shuffle_seed: Optional[int] = None):
    """(images, labels) batches through the Transform graph's decode/resize ops."""
    dataset = tf.data.Dataset.from_tensor_slices((images.contents, images.labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images.contents), seed=shuffle_seed)
    return dataset.batch(batch_size).map(lambda raw, y: (image_ops.decode_batch(raw, size, (0.0, 1.0)), y),
                                         num_parallel_calls=tf.data.AUTOTUNE)


def transfer(module_path: str, image_size, train: Images, evaluation: Images, params: TrainingParams,
             work_dir: str) -> Dict[str, Dict[str, float]]:
    """(a) and (b): the Trainer's own two-stage recipe (trainer.run.train_both_stages) on the training images
    only; (a) scores its stage-1 model, (b) the model it would export."""
    trainer_run.make_deterministic(params.seed)
    started = time.perf_counter()
    outcome = trainer_run.train_both_stages(
        decoded(train, image_size, params.batch_size), module_path, train.num_classes, params,
        work_dir, module_contract.read_contract(module_path).feature_levels)
    seconds = time.perf_counter() - started

    def accuracy(classifier) -> float:
        logits = classifier.predict(decoded(evaluation, image_size, 32), verbose=0)
        return float((logits.argmax(axis=1) == evaluation.labels).mean())

    return {"stage1": {"accuracy": accuracy(outcome.stage1_classifier), "seconds": outcome.stages[0].seconds},
            "stage1+2": {"accuracy": accuracy(outcome.classifier), "seconds": seconds}}


class TimeBudget(tf_keras.callbacks.Callback):
    """Stops training after the batch that uses up the budget (the epoch's validation still runs)."""

    def __init__(self, seconds: float):
        super().__init__()
        self._seconds, self._started = seconds, 0.0

    def on_train_begin(self, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self._started >= self._seconds:
            self.model.stop_training = True


def scratch_cnn(num_classes: int, size: int, dropout: float) -> tf_keras.Model:
    """Four conv-BN-ReLU-pool blocks, global average pooling, then the Trainer's head."""
    images = tf_keras.Input((size, size, 3))
    x = images
    for filters in (32, 64, 128, 256):
        x = tf_keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = tf_keras.layers.BatchNormalization()(x)
        x = tf_keras.layers.ReLU()(x)
        x = tf_keras.layers.MaxPooling2D()(x)
    features = tf_keras.layers.GlobalAveragePooling2D()(x)
    return tf_keras.Model(images, model.build_head(num_classes, dropout)(features))


def scratch(train: Images, evaluation: Images, size: int, params: TrainingParams, budget_s: float):
    """(c): trains until the budget is spent; keeps the epoch of lowest eval loss."""
    tf_keras.utils.set_random_seed(params.seed)
    net = scratch_cnn(train.num_classes, size, SCRATCH_DROPOUT)
    model.compile_classifier(net, SCRATCH_LEARNING_RATE)
    # Decoded once: at 64x64 the images fit in memory. Repeated, so that one iterator serves every epoch: a new
    # iterator per epoch re-optimizes the augmentation graph, which at k=5 (2 steps) costs more than the epoch.
    train_batches = (decoded(train, (size, size), params.batch_size).unbatch().cache()
                     .shuffle(len(train.contents), seed=params.seed).repeat().batch(params.batch_size)
                     .map(lambda x, y: (data.augment(x, params.seed), y), num_parallel_calls=tf.data.AUTOTUNE))
    eval_batches = decoded(evaluation, (size, size), 64).cache()
    best = tf_keras.callbacks.EarlyStopping(monitor="val_loss", patience=10**9, restore_best_weights=True)
    started = time.perf_counter()
    history = net.fit(train_batches, validation_data=eval_batches, epochs=10**9, verbose=0,
                      steps_per_epoch=-(-len(train.contents) // params.batch_size),
                      callbacks=[TimeBudget(budget_s), best])
    seconds = time.perf_counter() - started
    accuracy = net.evaluate(eval_batches, verbose=0, return_dict=True)["accuracy"]
    return {"accuracy": float(accuracy), "seconds": seconds, "epochs": len(history.history["loss"])}


def summarize(runs: List[dict], ks) -> Dict[str, Dict[str, dict]]:
    """Per variant and k: accuracy mean, min and max over the seeds, and mean training seconds."""
    summary = {}
    for variant in VARIANTS:
        summary[variant] = {}
        for k in ks:
            accuracies = [r[variant]["accuracy"] for r in runs if r["k"] == k]
            seconds = [r[variant]["seconds"] for r in runs if r["k"] == k]
            summary[variant][str(k)] = {"accuracy_mean": round(float(np.mean(accuracies)), 3),
                                        "accuracy_min": round(min(accuracies), 3),
                                        "accuracy_max": round(max(accuracies), 3),
                                        "seconds_mean": round(float(np.mean(seconds)), 1)}
    return summary


def run(quick: bool) -> dict:
    settings = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as work_dir:
        if quick:
            module_path = tiny.build_tiny_module(os.path.join(work_dir, "tiny"), image_size=32)
        else:
            module_path = builder.build_module("feature_vector")
        image_size = module_contract.read_contract(module_path).image_size
        evaluation = generate_images(os.path.join(work_dir, "eval"), settings.eval_per_class, EVAL_SEED)
        runs = []
        for seed in settings.seeds:
            pool = generate_images(os.path.join(work_dir, f"train-{seed}"), max(settings.ks), seed)
            params = dataclasses.replace(settings.params, seed=seed)
            for k in settings.ks:
                train = first_per_class(pool, k)
                result = {"k": k, "seed": seed,
                          **transfer(module_path, image_size, train, evaluation, params, work_dir)}
                result["scratch"] = scratch(train, evaluation, settings.scratch_size, params,
                                            result["stage1+2"]["seconds"])
                print(f"k={k} seed={seed}: " + ", ".join(
                    f"{v} {result[v]['accuracy']:.3f} in {result[v]['seconds']:.0f} s" for v in VARIANTS), flush=True)
                runs.append(result)
    summary = summarize(runs, settings.ks)
    return {
        "mode": "quick" if quick else "full",
        "module": os.path.basename(module_path),
        "image_size": list(image_size),
        "scratch_image_size": [settings.scratch_size, settings.scratch_size],
        "ks": list(settings.ks),
        "seeds": list(settings.seeds),
        "eval_images": len(evaluation.contents),
        "params": {"batch_size": settings.params.batch_size, "cv_folds": settings.params.cv_folds,
                   "stage2_epochs": settings.params.stage2_epochs,
                   "fine_tune_blocks": settings.params.fine_tune_blocks,
                   "scratch_learning_rate": SCRATCH_LEARNING_RATE},
        "runs": runs,
        "summary": summary,
        "scratch_saturated": summary["scratch"][str(max(settings.ks))]["accuracy_mean"] >= SATURATED_ACCURACY,
    }


def render(results: dict) -> str:
    lines = [f"Transfer vs scratch ({results['mode']}: module {results['module']} at "
             f"{results['image_size'][0]}x{results['image_size'][1]}, scratch CNN at "
             f"{results['scratch_image_size'][0]}x{results['scratch_image_size'][1]}; {results['eval_images']} eval "
             f"images; seeds {results['seeds']}; accuracy mean (min-max), mean training seconds)",
             f"  {'k/class':>7s}  " + "  ".join(f"{v:>25s}" for v in VARIANTS)]
    for k in results["ks"]:
        cells = []
        for variant in VARIANTS:
            s = results["summary"][variant][str(k)]
            cells.append(f"{s['accuracy_mean']:.3f} ({s['accuracy_min']:.2f}-{s['accuracy_max']:.2f}) "
                         f"{s['seconds_mean']:6.1f} s")
        lines.append(f"  {k:7d}  " + "  ".join(f"{c:>25s}" for c in cells))
    if results["scratch_saturated"]:
        lines.append(f"  WARNING: scratch reaches >= {SATURATED_ACCURACY} at the largest k: the data is too easy to "
                     "show what transfer learning buys.")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    """Accuracy vs images per class, mean with a min-max bar over the seeds, one line per variant."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    import matplotlib.ticker  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    labels = {"stage1": "(a) stage 1: head on frozen features", "stage1+2": "(b) stage 1 + stage 2 fine-tuning",
              "scratch": "(c) small CNN from scratch, (b)'s time"}
    ks = results["ks"]
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for variant in VARIANTS:
        stats = [results["summary"][variant][str(k)] for k in ks]
        means = np.array([s["accuracy_mean"] for s in stats])
        spread = [means - [s["accuracy_min"] for s in stats], [s["accuracy_max"] for s in stats] - means]
        axes.errorbar(ks, means, yerr=spread, marker="o", capsize=3, label=labels[variant])
    axes.axhline(1 / len(sample_data.CLASS_NAMES), color="grey", linestyle=":", label="chance")
    axes.set_xscale("log")
    axes.set_xticks(ks, [str(k) for k in ks])
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_ylim(0, 1)
    axes.set_xlabel("training images per class")
    axes.set_ylabel(f"eval accuracy ({results['eval_images']} images)")
    axes.set_title(f"Transfer vs scratch: mean and min-max over {len(results['seeds'])} seeds")
    axes.legend(loc="best", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv=None) -> int:
    def add_plot_flag(parser):
        parser.add_argument("--plot", help="Also plot accuracy vs images per class into this PNG file.")

    def plot_if_asked(results, args):
        if args.plot:
            plot(results, args.plot)

    return common.run_cli(__doc__, run, render, argv, add_plot_flag, plot_if_asked)


if __name__ == "__main__":
    sys.exit(main())
