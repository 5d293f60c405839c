"""Trainer speed, measured as ratios within one run (absolute times vary from machine to machine).

1. Feature extraction: stage 1 with N head epochs (features computed once, cached) / one backbone forward pass
   over the same images. Goal <= 1.3.
2. Fine-tune throughput: stage 2's images/s (the Trainer's own input pipeline: decode, resize, augment, in
   tf.data) / a bare training-step loop over the same images already decoded in memory, same model and batch.
   Goal >= 0.9.

Usage: python -m benchmarks.trainer_benchmark [--quick] [--json FILE]
(--quick uses the tiny test module and a few images; CI runs it so the script cannot rot.)
"""
import dataclasses
import glob
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from components.trainer import model, stages  # noqa: E402
from components.trainer.params import TrainingParams  # noqa: E402
from components.transform import image_ops  # noqa: E402
from pipeline import sample_data  # noqa: E402
from pipeline.hub_modules import builder, contract as module_contract, tiny  # noqa: E402
from benchmarks import common  # noqa: E402

GOALS = {"stage1_vs_one_forward_pass": ("<=", 1.3), "stage2_vs_bare_loop_throughput": (">=", 0.9)}


@dataclasses.dataclass
class Setup:
    module_path: str
    image_size: tuple
    files: list
    labels: np.ndarray
    head_epochs: int
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
    return Setup(module_path, size, files, labels, head_epochs=10, stage2_epochs=2 if quick else 3,
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


def one_forward_pass(setup: Setup) -> float:
    """Seconds for the backbone to see every image once (train and eval: what stage 1 extracts)."""
    backbone = model.frozen_backbone(setup.module_path)
    forward = tf.function(lambda x: backbone(x, training=False))
    for images, _ in image_dataset(setup).take(1):
        forward(images)  # trace outside the timing, as stage 1's Keras functions are traced inside it
    seconds, _ = timed(lambda: [forward(images) for images, _ in image_dataset(setup)])
    return seconds


def stage1(setup: Setup, work_dir: str) -> float:
    params = TrainingParams(stage1_epochs=setup.head_epochs, early_stopping_patience=setup.head_epochs,
                            batch_size=setup.batch_size)
    head = model.build_head(len(set(setup.labels.tolist())), params.dropout)
    backbone = model.frozen_backbone(setup.module_path)
    train, evaluation = image_dataset(setup, "train"), image_dataset(setup, "eval")
    seconds, _ = timed(lambda: stages.train_head(train, evaluation, backbone, head, params,
                                                 tempfile.mkdtemp(dir=work_dir), os.path.join(work_dir, "logs1")))
    return seconds


def stage2_throughput(setup: Setup, work_dir: str) -> float:
    """Images/s of stage 2's training epochs after the first (which includes tracing)."""
    params = TrainingParams(stage2_epochs=setup.stage2_epochs, batch_size=setup.batch_size, augment=True)
    backbone = model.fine_tunable_backbone(setup.module_path, params.fine_tune_blocks)
    classifier = model.build_classifier(backbone, model.build_head(5, params.dropout), setup.image_size)
    train_images = len(list(image_dataset(setup, "train").unbatch()))
    steps = -(-train_images // setup.batch_size)
    result = stages.fine_tune(image_dataset(setup, "train").shuffle(64), image_dataset(setup, "eval"), classifier,
                              [], params, steps, os.path.join(work_dir, "logs2"), cache_dir=work_dir)
    timed_epochs = result.train_seconds_per_epoch[1:]
    return train_images * len(timed_epochs) / sum(timed_epochs)


def bare_loop_throughput(setup: Setup) -> float:
    """The same model, loss and optimizer stepped over tensors already in memory: the input pipeline's ceiling."""
    backbone = model.fine_tunable_backbone(setup.module_path, 2)
    classifier = model.build_classifier(backbone, model.build_head(5, 0.2), setup.image_size)
    batches = list(image_dataset(setup, "train"))
    train_images = sum(int(x.shape[0]) for x, _ in batches)
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
    epochs = setup.stage2_epochs - 1  # as many epochs as stage 2's timed ones
    seconds, _ = timed(lambda: [float(step(x, y)) for _ in range(epochs) for x, y in batches])
    return train_images * epochs / seconds


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as work_dir:
        setup = prepare(quick, work_dir)
        forward_s = one_forward_pass(setup)
        stage1_s = stage1(setup, work_dir)
        fit_ips = stage2_throughput(setup, work_dir)
        bare_ips = bare_loop_throughput(setup)
    return {
        "mode": "quick" if quick else "full",
        "module": os.path.basename(setup.module_path),
        "images": len(setup.files),
        "image_size": list(setup.image_size),
        "batch_size": setup.batch_size,
        "head_epochs": setup.head_epochs,
        "one_forward_pass_s": round(forward_s, 2),
        "stage1_s": round(stage1_s, 2),
        "stage1_vs_one_forward_pass": round(stage1_s / forward_s, 3),
        "stage2_images_per_s": round(fit_ips, 2),
        "bare_loop_images_per_s": round(bare_ips, 2),
        "stage2_vs_bare_loop_throughput": round(fit_ips / bare_ips, 3),
    }


def render(results: dict) -> str:
    lines = [f"Trainer benchmark ({results['mode']}: {results['images']} images of "
             f"{results['image_size'][0]}x{results['image_size'][1]}, module {results['module']}, "
             f"batch {results['batch_size']})",
             f"  one backbone forward pass         {results['one_forward_pass_s']:8.2f} s",
             f"  stage 1 ({results['head_epochs']} head epochs)          {results['stage1_s']:8.2f} s",
             f"  stage 2 (Trainer input pipeline)  {results['stage2_images_per_s']:8.2f} images/s",
             f"  bare training-step loop           {results['bare_loop_images_per_s']:8.2f} images/s"]
    lines += common.goal_lines(results, GOALS)
    return "\n".join(lines)


def main(argv=None) -> int:
    return common.run_cli(__doc__, run, render, argv)


if __name__ == "__main__":
    sys.exit(main())
