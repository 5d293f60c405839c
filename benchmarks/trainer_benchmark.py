"""Trainer speed, measured as ratios within one run (absolute times vary from machine to machine).

1. Feature extraction: stage 1 (one feature pass over every level, then the head's cross-validated fit:
   components/trainer/head.py) / one backbone forward pass over the same (training) images. Goal <= 1.5
   (issue 12; it was 1.3 for 10 Keras head epochs before the head became a cross-validated fit). Both sides start from a loaded module and include the backbone function's
   one-off trace, which any pass pays; the figure with the forward pass's trace left out (stricter) is printed too.
2. Fine-tune throughput: stage 2's images/s (the Trainer's own input pipeline: decode, resize, augment, in
   tf.data) / a bare training-step loop over the same images already decoded in memory, same model and batch.
   Goal >= 0.9.
Each baseline runs just before and just after the side it is compared with: a forward pass around stage 1, a
bare-loop epoch around each stage-2 epoch (this machine's speed drifts by 10-30% within seconds). The reported
ratios are medians over several rounds.

Usage: python -m benchmarks.trainer_benchmark [--quick] [--json FILE]
(--quick uses the tiny test module and a few images; CI runs it so the script cannot rot.)
"""
import dataclasses
import glob
import os
import sys
import tempfile
import time
from typing import Callable, List

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from hubtfx.components.common import contract as module_contract  # noqa: E402
from hubtfx.components.trainer import head, model, run as trainer_run, stages  # noqa: E402
from hubtfx.components.trainer.params import TrainingParams  # noqa: E402
from hubtfx.components.transform import image_ops  # noqa: E402
from hubtfx.pipeline.datasets import sample_data  # noqa: E402
from hubtfx.pipeline.hub_modules import builder, tiny  # noqa: E402
from benchmarks import common  # noqa: E402

GOALS = {"stage1_vs_one_forward_pass": ("<=", 1.5), "stage2_vs_bare_loop_throughput": (">=", 0.9)}
ROUNDS = 7


@dataclasses.dataclass
class Setup:
    module_path: str
    image_size: tuple
    files: list
    labels: np.ndarray
    stage2_epochs: int
    batch_size: int


def prepare(quick: bool, work_dir: str) -> Setup:
    images_per_class = 4 if quick else 60
    root = os.path.join(work_dir, "data")
    sample_data.generate_dataset(root, images_per_class=images_per_class, seed=7)
    if quick:
        module_path = tiny.build_tiny_module(os.path.join(work_dir, "tiny"), image_size=32)
    else:
        module_path = builder.build_module("feature_vector")
    classes = sorted(os.listdir(root))
    files = sorted(glob.glob(os.path.join(root, "*", "*")))
    labels = np.array([classes.index(os.path.basename(os.path.dirname(f))) for f in files], dtype=np.int64)
    size = module_contract.read_contract(module_path).image_size
    return Setup(module_path, size, files, labels, stage2_epochs=2 if quick else 4,
                 batch_size=8 if quick else 16)


def image_dataset(setup: Setup, split: str = "all") -> tf.data.Dataset:
    """The Trainer's decode/resize path (the same ops the Transform graph runs), batched; every 5th image is
    in the eval split."""
    chosen = [i for i in range(len(setup.files)) if split == "all" or (i % 5 == 4) == (split == "eval")]
    contents = [open(setup.files[i], "rb").read() for i in chosen]
    return (tf.data.Dataset.from_tensor_slices((contents, setup.labels[chosen]))
            .batch(setup.batch_size)
            .map(lambda raw, y: (image_ops.decode_batch(raw, setup.image_size, (0.0, 1.0)), y),
                 num_parallel_calls=tf.data.AUTOTUNE))


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def one_forward_pass(setup: Setup) -> tuple:
    """Seconds for the backbone (its feature vector only) to see every training image once, and the part of them
    its first call (the trace) took."""
    dataset = stages.without_autotuning(image_dataset(setup, "train"))  # iterated as stage 1 iterates its input
    forward = stages.feature_extractor(model.frozen_backbone(setup.module_path), dataset.element_spec[0])
    started = time.perf_counter()
    trace_s = None
    for images, _ in dataset:
        forward(images).numpy()
        trace_s = time.perf_counter() - started if trace_s is None else trace_s
    seconds = time.perf_counter() - started
    images = len(train_rows(setup))
    return seconds, trace_s - seconds * min(setup.batch_size, images) / images


def train_rows(setup: Setup) -> List[int]:
    return [i for i in range(len(setup.files)) if i % 5 != 4]


def stage1(setup: Setup) -> float:
    """The Trainer's stage 1 with the default parameters: every level's features, then the cross-validated head."""
    params = TrainingParams(batch_size=setup.batch_size)
    levels = module_contract.read_contract(setup.module_path).feature_levels
    train = image_dataset(setup, "train")
    candidates = trainer_run.level_candidates(levels, params.feature_levels)
    every = tuple(dict.fromkeys(name for c in candidates for name in c))
    backbone = model.frozen_backbone(setup.module_path, every)  # loaded before the clock, like the forward pass's

    def fit():
        extract = stages.feature_extractor(backbone, train.element_spec[0])
        features = stages.extract_features(train, extract)
        return head.fit_head(features, len(set(setup.labels.tolist())), candidates, params.cv_folds,
                             params.sklearn_class_weight, params.seed)

    seconds, _ = timed(fit)
    return seconds


def bare_epoch_runner(setup: Setup, held_out: np.ndarray) -> Callable[[], float]:
    """The same model, loss and optimizer stepped over tensors already in memory: the input pipeline's ceiling.
    Returns a function that runs one epoch and returns its seconds (the step is traced before)."""
    backbone = model.fine_tunable_backbone(setup.module_path, 2)
    classifier = model.build_classifier(backbone, model.build_head(5, 0.2), model.image_spec(setup.image_size))
    fitting = [example for example, out in zip(image_dataset(setup, "train").unbatch(), held_out) if not out]
    batches = [(tf.stack([x for x, _ in fitting[i:i + setup.batch_size]]),
                tf.stack([y for _, y in fitting[i:i + setup.batch_size]]))
               for i in range(0, len(fitting), setup.batch_size)]
    optimizer = tf_keras.optimizers.Adam(1e-4)
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, classifier(images, training=True))
        grads = tape.gradient(loss, classifier.trainable_variables)
        optimizer.apply_gradients(zip(grads, classifier.trainable_variables))
        return loss

    step(*batches[0])
    return lambda: timed(lambda: [float(step(x, y)) for x, y in batches])[0]


class BareEpochAfterEachEpoch(tf_keras.callbacks.Callback):
    """Runs one bare-loop epoch after each stage-2 epoch (after its validation, outside its timing)."""

    def __init__(self, run_epoch: Callable[[], float]):
        super().__init__()
        self._run_epoch = run_epoch
        self.seconds: List[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(self._run_epoch())


def stage2_against_bare_loop(setup: Setup, work_dir: str) -> dict:
    """Stage 2's epochs interleaved with bare-loop epochs. Each stage-2 epoch after the first (which decodes the
    images and traces the step) is compared with the mean of the bare epochs just before and just after it."""
    # Patience covers every epoch and the reference loss is infinite, so early stopping never ends the timing.
    params = TrainingParams(stage2_epochs=setup.stage2_epochs, stage2_patience=setup.stage2_epochs,
                            batch_size=setup.batch_size, augment=True)
    backbone = model.fine_tunable_backbone(setup.module_path, params.fine_tune_blocks)
    classifier = model.build_classifier(backbone, model.build_head(5, params.dropout), model.image_spec(setup.image_size))
    held_out = stages.validation_rows(setup.labels[train_rows(setup)], params.validation_fraction, params.seed)
    fitting, validation = stages.split_images(image_dataset(setup, "train"), held_out, params.batch_size,
                                              params.seed)
    bare = BareEpochAfterEachEpoch(bare_epoch_runner(setup, held_out))
    train_images = int((~held_out).sum())
    steps = -(-train_images // setup.batch_size)
    result = stages.fine_tune(fitting, validation, classifier, [], params, steps,
                              {"loss": float("inf"), "accuracy": 0.0}, os.path.join(work_dir, "logs2"),
                              extra_callbacks=[bare])
    stage2_s = result.train_seconds_per_epoch[1:]
    bare_s = [(before + after) / 2 for before, after in zip(bare.seconds, bare.seconds[1:])]
    return {"stage2_images_per_s": train_images / _median(stage2_s),
            "bare_loop_images_per_s": train_images / _median(bare_s),
            "stage2_ratios": [b / s for b, s in zip(bare_s, stage2_s)]}


def measure_once(setup: Setup, work_dir: str) -> dict:
    """One round of all four measurements; each baseline runs just before and just after the side it is compared
    with (for stage 2, epoch by epoch)."""
    forward_before, trace_before = one_forward_pass(setup)
    stage1_s = stage1(setup)
    forward_after, trace_after = one_forward_pass(setup)
    return {"forward_s": [forward_before, forward_after], "trace_s": [trace_before, trace_after],
            "stage1_s": stage1_s, **stage2_against_bare_loop(setup, work_dir)}


def _median(values) -> float:
    return float(np.median(values))


def _mean(values) -> float:
    return float(np.mean(values))


def run(quick: bool) -> dict:
    """Stage 1: one ratio per round (against the mean of the forward passes just before and after it); stage 2:
    one ratio per timed epoch. Reported: the median ratio; times and rates are medians too."""
    rounds = 1 if quick else ROUNDS
    with tempfile.TemporaryDirectory() as work_dir:
        setup = prepare(quick, work_dir)
        measured = [measure_once(setup, work_dir) for _ in range(rounds)]
    stage1_ratios = [m["stage1_s"] / _mean(m["forward_s"]) for m in measured]
    stage1_strict_ratios = [m["stage1_s"] / (_mean(m["forward_s"]) - _mean(m["trace_s"])) for m in measured]
    stage2_ratios = [_median(m["stage2_ratios"]) for m in measured]
    return {
        "mode": "quick" if quick else "full",
        "module": os.path.basename(setup.module_path),
        "images": len(setup.files),
        "image_size": list(setup.image_size),
        "batch_size": setup.batch_size,
        "rounds": rounds,
        "one_forward_pass_s": round(_median([s for m in measured for s in m["forward_s"]]), 2),
        "one_forward_pass_trace_s": round(_median([s for m in measured for s in m["trace_s"]]), 2),
        "stage1_s": round(_median([m["stage1_s"] for m in measured]), 2),
        "stage1_vs_one_forward_pass": round(_median(stage1_ratios), 3),
        "stage1_vs_forward_without_trace": round(_median(stage1_strict_ratios), 3),
        "stage2_images_per_s": round(_median([m["stage2_images_per_s"] for m in measured]), 2),
        "bare_loop_images_per_s": round(_median([m["bare_loop_images_per_s"] for m in measured]), 2),
        "stage2_vs_bare_loop_throughput": round(_median([r for m in measured for r in m["stage2_ratios"]]), 3),
        "per_round": {
            "one_forward_pass_s": [[round(s, 2) for s in m["forward_s"]] for m in measured],
            "stage1_s": [round(m["stage1_s"], 2) for m in measured],
            "stage1_vs_one_forward_pass": [round(r, 3) for r in stage1_ratios],
            "stage2_vs_bare_loop_throughput": [round(r, 3) for r in stage2_ratios],
        },
    }


def render(results: dict) -> str:
    lines = [f"Trainer benchmark ({results['mode']}: {results['images']} images of "
             f"{results['image_size'][0]}x{results['image_size'][1]}, module {results['module']}, "
             f"batch {results['batch_size']}; medians of {results['rounds']} rounds)",
             f"  one backbone forward pass         {results['one_forward_pass_s']:8.2f} s "
             f"(of which trace {results['one_forward_pass_trace_s']:.2f} s)",
             f"  stage 1 (features + CV head fit)  {results['stage1_s']:8.2f} s",
             f"  stage 2 (Trainer input pipeline)  {results['stage2_images_per_s']:8.2f} images/s",
             f"  bare training-step loop           {results['bare_loop_images_per_s']:8.2f} images/s"]
    lines += common.goal_lines(results, GOALS)
    lines.append(f"  {'stage1_vs_forward_without_trace':34s} "
                 f"{results['stage1_vs_forward_without_trace']:7.3f}  (stricter, for information)")
    per_round = results["per_round"]
    lines += ["", "  per round (before/after pairs for the forward pass):",
              "    forward pass s   " + "  ".join(f"{a:.2f}/{b:.2f}" for a, b in per_round["one_forward_pass_s"]),
              "    stage 1 s        " + "  ".join(f"{s:.2f}" for s in per_round["stage1_s"]),
              "    stage 1 ratio    " + "  ".join(f"{r:.3f}" for r in per_round["stage1_vs_one_forward_pass"]),
              "    stage 2 ratio    " + "  ".join(f"{r:.3f}" for r in per_round["stage2_vs_bare_loop_throughput"])]
    return "\n".join(lines)


def main(argv=None) -> int:
    return common.run_cli(__doc__, run, render, argv)


if __name__ == "__main__":
    sys.exit(main())
