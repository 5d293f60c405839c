"""Trainer speed, measured as ratios within one run (absolute times vary from machine to machine).

1. Feature extraction: stage 1 with N head epochs (features computed once, cached) / one backbone forward pass
   over the same images. Goal <= 1.3. Both sides start from a loaded module and include the backbone function's
   one-off trace, which any pass pays; the figure with the forward pass's trace left out (stricter) is printed too.
2. Fine-tune throughput: stage 2's images/s (the Trainer's own input pipeline: decode, resize, augment, in
   tf.data) / a bare training-step loop over the same images already decoded in memory, same model and batch.
   Goal >= 0.9.
Each baseline (forward pass, bare loop) runs just before and just after the side it is compared with, in several
rounds; the reported ratios are medians over rounds.

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
ROUNDS = 7


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
    return Setup(module_path, size, files, labels, head_epochs=10, stage2_epochs=2 if quick else 4,
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
    """Seconds for the backbone to see every image once (train and eval: what stage 1 extracts), and the part of
    them its first call (the trace) took."""
    dataset = stages.without_autotuning(image_dataset(setup))  # iterated as stage 1 iterates its input
    forward = stages.feature_extractor(model.frozen_backbone(setup.module_path), dataset.element_spec[0])
    started = time.perf_counter()
    trace_s = None
    for images, _ in dataset:
        forward(images).numpy()
        trace_s = time.perf_counter() - started if trace_s is None else trace_s
    seconds = time.perf_counter() - started
    first_batch = min(setup.batch_size, len(setup.files))
    return seconds, trace_s - seconds * first_batch / len(setup.files)


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


def measure_once(setup: Setup, work_dir: str) -> dict:
    """One round of all four measurements; each baseline runs just before and just after the side it is compared
    with."""
    forward_before, trace_before = one_forward_pass(setup)
    stage1_s = stage1(setup, work_dir)
    forward_after, trace_after = one_forward_pass(setup)
    bare_before = bare_loop_throughput(setup)
    fit_ips = stage2_throughput(setup, work_dir)
    bare_ips = (bare_before + bare_loop_throughput(setup)) / 2
    return {"forward_s": [forward_before, forward_after], "trace_s": [trace_before, trace_after],
            "stage1_s": stage1_s, "stage2_images_per_s": fit_ips, "bare_loop_images_per_s": bare_ips}


def _median(values) -> float:
    return float(np.median(values))


def _mean(values) -> float:
    return float(np.mean(values))


def run(quick: bool) -> dict:
    """Each round gives one ratio per goal from back-to-back runs (stage 1 against the mean of the forward passes
    just before and after it); the reported ratio is the median over rounds, the times and rates are medians too."""
    rounds = 1 if quick else ROUNDS
    with tempfile.TemporaryDirectory() as work_dir:
        setup = prepare(quick, work_dir)
        measured = [measure_once(setup, work_dir) for _ in range(rounds)]
    stage1_ratios = [m["stage1_s"] / _mean(m["forward_s"]) for m in measured]
    stage1_strict_ratios = [m["stage1_s"] / (_mean(m["forward_s"]) - _mean(m["trace_s"])) for m in measured]
    stage2_ratios = [m["stage2_images_per_s"] / m["bare_loop_images_per_s"] for m in measured]
    return {
        "mode": "quick" if quick else "full",
        "module": os.path.basename(setup.module_path),
        "images": len(setup.files),
        "image_size": list(setup.image_size),
        "batch_size": setup.batch_size,
        "head_epochs": setup.head_epochs,
        "rounds": rounds,
        "one_forward_pass_s": round(_median([s for m in measured for s in m["forward_s"]]), 2),
        "one_forward_pass_trace_s": round(_median([s for m in measured for s in m["trace_s"]]), 2),
        "stage1_s": round(_median([m["stage1_s"] for m in measured]), 2),
        "stage1_vs_one_forward_pass": round(_median(stage1_ratios), 3),
        "stage1_vs_forward_without_trace": round(_median(stage1_strict_ratios), 3),
        "stage2_images_per_s": round(_median([m["stage2_images_per_s"] for m in measured]), 2),
        "bare_loop_images_per_s": round(_median([m["bare_loop_images_per_s"] for m in measured]), 2),
        "stage2_vs_bare_loop_throughput": round(_median(stage2_ratios), 3),
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
             f"  stage 1 ({results['head_epochs']} head epochs)          {results['stage1_s']:8.2f} s",
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
