"""Scale: the whole local pipeline at about 300, 3,000 and 10,000 images, next to its physical anchor (issue "Scale").

Data: animal-mnist (benchmarks/datasets.py, `prepare(full=True)`): 9716 distinct 28 px silhouettes of 10 animals,
real images the pipeline treats like any photo (decoded and resized to the module's 224 px). Each size N is a
class-balanced subset (N / 10 per class, the first in a seeded shuffle, so a smaller size is part of a larger one;
the largest size is every image: 812..1000 per class). For each size, one fresh `hubtfx run` with the default
flags (bundled EfficientNet-Lite0, stage 1 cross-validated with up to 5 folds, fewer on large training sets as
head.CV_ROW_BUDGET says, up to 8 stage-2 epochs) in a child process with its own output
folder and TMPDIR, sizes one after another, reports:
  per component  wall seconds, CPU seconds and peak RSS (the run's own timing JSON, pipeline/reporting/timing.py);
  run            wall seconds of the pipeline (the timing JSON's) and of the child process (start-up included),
                 seconds per image, peak RSS (the run's, sampled every 0.1 s by the run itself);
  temporary disk the largest (bytes under the child's TMPDIR + bytes under its output folder) while it ran, minus
                 the output folder's final size, sampled every 0.5 s: what a run writes besides its outputs
                 (Beam's and TFX's temporary shards, Transform's analyzer outputs), and what it left in TMPDIR;
  source         the images' bytes on disk (file sizes).
Physical anchor, measured in this process before the runs on the same machine: `forward_s`, one frozen backbone
forward pass per image (batches of the Trainer's batch size, images decoded in memory, all feature levels), and
`step_s`, one stage-2 training step (top 2 blocks unfrozen, forward and backward, batch size 16). For each run,
anchor = forward_s x (training images [stage 1's features] + eval images [the Evaluator] + validation images x
stage-2 epochs run) + step_s x stage-2 steps run (epochs x ceil(fitting images / batch size)): the work the recipe
cannot avoid, with no input pipeline, no Beam, no TFMA, no start-up.

Goals (issue "Scale"): pipeline seconds per image at the largest size <= 1.3 x the anchor's; peak RSS at the
largest size <= 1.5 x at the smallest; temporary disk <= 10 % of the source data at every size.

Beam workers ("use the cores"): the middle size runs a second time with `--beam-workers N` (FnApiRunner's
multi_processing mode, N worker processes; default N = 2) and the Beam components' seconds are compared.

Usage: python -m benchmarks.scaling [--quick] [--sizes 300,3000,10000] [--compare-workers 2] [--json FILE]
                                    [--plot FILE]
(--quick: the tiny test module on 20 and 40 generated images, one stage-2 epoch; CI runs it so the script cannot
rot.)
"""
import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from hubtfx.components.common import artifact_files  # noqa: E402
from hubtfx.components.common import contract as module_contract  # noqa: E402
from hubtfx.components.common.contract import DEFAULT_LEVEL  # noqa: E402
from hubtfx.components.trainer import model  # noqa: E402
from hubtfx.components.trainer.params import TrainingParams  # noqa: E402
from hubtfx.components.transform import image_ops  # noqa: E402
from hubtfx.pipeline.config import PipelineConfig  # noqa: E402
from hubtfx.pipeline.datasets import sample_data  # noqa: E402
from hubtfx.pipeline.hub_modules import builder, tiny  # noqa: E402
from hubtfx.pipeline.reporting import timing  # noqa: E402
from benchmarks import common, datasets  # noqa: E402

GOALS = {"seconds_per_image_vs_anchor_at_largest": ("<=", 1.3),
         "peak_rss_largest_vs_smallest": ("<=", 1.5),
         "temporary_disk_vs_source_worst": ("<=", 0.10)}
DEFAULT_SIZES = (300, 3000, 10000)
QUICK_SIZES = (20, 40)
SUBSET_SEED = 0
DISK_SAMPLE_SECONDS = 0.5
ANCHOR_FORWARD_IMAGES = 128  # after one warm-up batch
ANCHOR_STEPS = 8  # after two warm-up steps
# The components that run Beam jobs (what config.beam_workers changes).
BEAM_COMPONENTS = ("ImageFolderExampleGen", "StatisticsGen", "Transform", "Evaluator")
QUICK_FLAGS = ["--stage2-epochs", "1", "--batch-size", "8", "--min-validation-examples", "2", "--cv-folds", "2"]


def folder_bytes(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # deleted while walking: it was temporary
                pass
    return total


class DiskWatcher:
    """Samples bytes under some folders every DISK_SAMPLE_SECONDS while a child runs; keeps the peak sum."""

    def __init__(self, folders: Sequence[str]):
        self.folders = folders
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self):
        self.peak = max(self.peak, sum(folder_bytes(f) for f in self.folders))

    def _run(self):
        while not self._stop.wait(DISK_SAMPLE_SECONDS):
            self._sample()


def run_pipeline(data_root: str, work_dir: str, extra_flags: Sequence[str]) -> dict:
    """One fresh `hubtfx run` in a child process; its timing, training history and disk figures."""
    output = os.path.join(work_dir, "output")
    tmp = os.path.join(work_dir, "tmp")
    os.makedirs(tmp)
    env = dict(os.environ, TMPDIR=tmp, TF_USE_LEGACY_KERAS="1")
    command = [sys.executable, "-m", "hubtfx.pipeline.cli.entry", "run", "--data-root", data_root,
               "--output-dir", output, "--accuracy-threshold", "0", *extra_flags]
    log_path = os.path.join(work_dir, "run.log")
    started = time.perf_counter()
    with open(log_path, "wb") as log, DiskWatcher([output, tmp]) as disk:
        code = subprocess.call(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    process_seconds = time.perf_counter() - started
    if code != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            raise RuntimeError(f"hubtfx run exited {code}; the end of its log:\n{f.read()[-3000:]}")
    with open(os.path.join(output, "reports", timing.LATEST_TIMING), encoding="utf-8") as f:
        run_timing = json.load(f)
    histories = glob.glob(os.path.join(output, "**", artifact_files.TRAINING_HISTORY_FILE), recursive=True)
    with open(histories[0], encoding="utf-8") as f:
        history = json.load(f)
    output_bytes, left_in_tmp = folder_bytes(output), folder_bytes(tmp)
    return {"timing": run_timing, "history": history, "process_seconds": process_seconds,
            "peak_temporary_bytes": max(0, disk.peak - output_bytes), "left_in_tmp_bytes": left_in_tmp,
            "output_bytes": output_bytes}


def recipe_work(history: dict, images: int, batch_size: int) -> Dict[str, int]:
    """The forward passes and training steps the run's recipe made (from its training_history.json)."""
    stages = history["stages"]
    train = stages["stage1"]["train_examples"]
    stage2 = stages.get("stage2", {})
    epochs = len((stage2.get("history") or {}).get("loss", []))
    fitting, validation = stage2.get("train_examples") or 0, stage2.get("validation_examples") or 0
    return {"train_images": train, "eval_images": images - train, "stage2_epochs_run": epochs,
            "forward_images": train + (images - train) + epochs * validation,
            "training_steps": epochs * math.ceil(fitting / batch_size)}


def measure_anchor(module_path: str, sample_files: Sequence[str], image_size, value_range, batch_size: int,
                   fine_tune_blocks: int, forward_images: int, steps: int, num_classes: int) -> Dict[str, float]:
    """Seconds per image of a frozen forward pass and seconds per stage-2 training step (see the module doc)."""
    contents = [open(path, "rb").read() for path in sample_files]
    images = image_ops.decode_batch(tf.constant(contents), tuple(image_size), value_range).numpy()
    levels = tuple(module_contract.read_contract(module_path).feature_levels) or (DEFAULT_LEVEL,)
    levels = tuple(dict.fromkeys((*[lvl for lvl in levels if lvl != DEFAULT_LEVEL], DEFAULT_LEVEL)))
    frozen = model.frozen_backbone(module_path, levels)

    def batches(count):
        for start in range(0, count, batch_size):
            yield tf.constant(images[np.arange(start, min(count, start + batch_size)) % len(images)])

    frozen(next(batches(batch_size)))  # warm-up: tracing
    started = time.perf_counter()
    for batch in batches(forward_images):
        frozen(batch)
    forward_s = (time.perf_counter() - started) / forward_images

    backbone = model.fine_tunable_backbone(module_path, fine_tune_blocks, levels)
    features = model.select_levels(frozen(next(batches(batch_size))), levels)
    width = int(features.shape[1])
    head = model.build_head(num_classes, 0.0, np.zeros(width, np.float32), np.ones(width, np.float32))
    model.set_head_weights(head, np.zeros((width, num_classes), np.float32), np.zeros(num_classes, np.float32))
    classifier = model.build_classifier(backbone, head, model.image_spec(image_size), levels)
    model.compile_classifier(classifier, 1e-4)
    labels = tf.constant(np.arange(batch_size) % num_classes, tf.int64)
    step_batches = list(batches(batch_size * (steps + 2)))
    for batch in step_batches[:2]:  # warm-up: tracing
        classifier.train_on_batch(batch, labels[:batch.shape[0]])
    started = time.perf_counter()
    for batch in step_batches[2:]:
        classifier.train_on_batch(batch, labels[:batch.shape[0]])
    step_s = (time.perf_counter() - started) / len(step_batches[2:])
    tf_keras.backend.clear_session()
    return {"forward_s_per_image": forward_s, "step_s": step_s, "batch_size": batch_size}


def measure_size(size: int, files_by_class: Dict[str, List[str]], work_dir: str, flags: Sequence[str],
                 anchor: Dict[str, float], batch_size: int) -> dict:
    """One pipeline run on a balanced subset of `size` images, with its anchor and figures."""
    chosen = datasets.balanced_subset(files_by_class, size, SUBSET_SEED)
    images = sum(len(files) for files in chosen.values())
    run_dir = tempfile.mkdtemp(prefix=f"n{size}-", dir=work_dir)
    source_bytes = datasets.copy_subset(chosen, os.path.join(run_dir, "data"))
    print(f"  {images} images ({' '.join(flags) or 'default flags'}): running the pipeline ...", flush=True)
    result = run_pipeline(os.path.join(run_dir, "data"), run_dir, flags)
    work = recipe_work(result["history"], images, batch_size)
    anchor_seconds = work["forward_images"] * anchor["forward_s_per_image"] + work["training_steps"] * anchor["step_s"]
    run_timing = result["timing"]
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"    {run_timing['wall_seconds']:.0f} s, anchor {anchor_seconds:.0f} s", flush=True)
    return {
        "size": size, "images": images, "source_bytes": source_bytes,
        "pipeline_seconds": run_timing["wall_seconds"], "process_seconds": round(result["process_seconds"], 1),
        "cpu_seconds": run_timing["cpu_seconds"], "peak_rss_bytes": run_timing["peak_rss_bytes"],
        "peak_temporary_bytes": result["peak_temporary_bytes"], "left_in_tmp_bytes": result["left_in_tmp_bytes"],
        "output_bytes": result["output_bytes"],
        "components": {c["component"]: {k: c[k] for k in ("wall_seconds", "cpu_seconds", "peak_rss_bytes")}
                       for c in run_timing["components"]},
        "work": work, "anchor_seconds": round(anchor_seconds, 3),
        "chosen_stage": result["history"].get("chosen_stage"),
        "stage_outcomes": {name: stage.get("outcome") for name, stage in result["history"]["stages"].items()},
        "stage_seconds": {name: stage.get("seconds") for name, stage in result["history"]["stages"].items()},
        "stage1_head": {k: result["history"].get("stage1_head", {}).get(k)
                        for k in ("levels", "c", "temperature", "seconds")},
    }


def prepare_data(quick: bool, work_dir: str):
    """(files by class, module path, PipelineConfig defaults to use, extra run flags)."""
    if quick:
        root = os.path.join(work_dir, "generated")
        sample_data.generate_dataset(root, images_per_class=max(QUICK_SIZES) // 5, seed=0)
        module_path = tiny.build_tiny_module(os.path.join(work_dir, "tiny"), image_size=32)
        flags = ["--hub-handle", module_path, *QUICK_FLAGS]
    else:
        root = datasets.prepare("animal-mnist", full=True)
        module_path = builder.build_module("feature_vector")  # built (or found in the cache) before any clock
        flags = []
    return datasets.files_by_class(root), module_path, flags


def run(args: argparse.Namespace) -> dict:
    sizes = QUICK_SIZES if args.quick else tuple(args.sizes)
    with tempfile.TemporaryDirectory(prefix="hubtfx-scaling-") as work_dir:
        files_by_class, module_path, flags = prepare_data(args.quick, work_dir)
        contract = module_contract.read_contract(module_path)
        params = TrainingParams.from_custom_config(
            {"batch_size": 8, "stage2_epochs": 1} if args.quick else {})
        every_file = [f for files in files_by_class.values() for f in files]
        print(f"Measuring the physical anchor on {module_path} ...", flush=True)
        anchor = measure_anchor(module_path, every_file[:64], contract.image_size, contract.value_range,
                                params.batch_size, params.fine_tune_blocks,
                                16 if args.quick else ANCHOR_FORWARD_IMAGES, 2 if args.quick else ANCHOR_STEPS,
                                len(files_by_class))
        runs = []
        for size in sizes:
            runs.append(measure_size(size, files_by_class, work_dir, flags, anchor, params.batch_size))
        comparison = None
        if args.compare_workers > 1:
            size = sizes[len(sizes) // 2]
            try:
                comparison = measure_size(size, files_by_class, work_dir,
                                          [*flags, "--beam-workers", str(args.compare_workers)], anchor,
                                          params.batch_size)
            except RuntimeError as e:  # the runs above are worth keeping
                print(f"  the --beam-workers {args.compare_workers} run failed: {e}", file=sys.stderr)
                comparison = {"size": size, "failed": str(e)[-2000:]}
            comparison["beam_workers"] = args.compare_workers
    largest, smallest = runs[-1], runs[0]
    return {
        "mode": "quick" if args.quick else "full",
        "dataset": "generated sample shapes" if args.quick else "animal-mnist (all 9716 distinct images)",
        "module": "tiny" if args.quick else "efficientnet_lite0 (bundled)",
        "cpu_count": timing.usable_cores(),
        "anchor": anchor,
        "runs": runs,
        "beam_workers_comparison": comparison,
        "seconds_per_image_vs_anchor_at_largest": round(
            largest["pipeline_seconds"] / largest["anchor_seconds"], 3),
        "peak_rss_largest_vs_smallest": round(largest["peak_rss_bytes"] / smallest["peak_rss_bytes"], 3),
        "temporary_disk_vs_source_worst": round(max(r["peak_temporary_bytes"] / r["source_bytes"] for r in runs), 3),
    }


def _mb(value: Optional[int]) -> str:
    return "" if value is None else f"{value / 1e6:.1f} MB"


def render(results: dict) -> str:
    anchor = results["anchor"]
    lines = [f"Scaling ({results['mode']}: {results['dataset']}, module {results['module']}, "
             f"{results['cpu_count']} cores)",
             f"  anchor: {anchor['forward_s_per_image'] * 1000:.1f} ms per image forward, {anchor['step_s']:.3f} s "
             f"per stage-2 step of {anchor['batch_size']}", ""]
    components = list(dict.fromkeys(c for r in results["runs"] for c, t in r["components"].items()
                                    if t["wall_seconds"] >= 1.0))
    header = f"  {'':30s}" + "".join(f"{r['images']:>12d}" for r in results["runs"])
    lines += [header + "   images", "  seconds"]
    for name in components:
        lines.append(f"    {name:28s}" + "".join(
            f"{r['components'].get(name, {}).get('wall_seconds', 0):12.1f}" for r in results["runs"]))
    rows = [("pipeline (whole run)", lambda r: f"{r['pipeline_seconds']:.1f}"),
            ("process (with start-up)", lambda r: f"{r['process_seconds']:.1f}"),
            ("anchor", lambda r: f"{r['anchor_seconds']:.1f}"),
            ("seconds per image", lambda r: f"{r['pipeline_seconds'] / r['images']:.4f}"),
            ("anchor per image", lambda r: f"{r['anchor_seconds'] / r['images']:.4f}"),
            ("pipeline / anchor", lambda r: f"{r['pipeline_seconds'] / r['anchor_seconds']:.2f}"),
            ("stage-2 epochs run", lambda r: str(r["work"]["stage2_epochs_run"])),
            ("peak RSS", lambda r: _mb(r["peak_rss_bytes"])),
            ("peak temporary disk", lambda r: _mb(r["peak_temporary_bytes"])),
            ("left in TMPDIR", lambda r: _mb(r.get("left_in_tmp_bytes"))),
            ("source data", lambda r: _mb(r["source_bytes"])),
            ("output folder", lambda r: _mb(r["output_bytes"]))]
    for title, cell in rows:
        lines.append(f"  {title:30s}" + "".join(f"{cell(r):>12s}" for r in results["runs"]))
    comparison = results.get("beam_workers_comparison")
    if comparison and comparison.get("failed"):
        lines += ["", f"  the --beam-workers {comparison['beam_workers']} run failed (see the JSON)"]
    elif comparison:
        single = next(r for r in results["runs"] if r["size"] == comparison["size"])
        lines += ["", f"  Beam in process vs {comparison['beam_workers']} worker processes, {single['images']} images "
                      "(wall seconds)"]
        for name in (*BEAM_COMPONENTS, None):
            one = single["components"].get(name, {}).get("wall_seconds") if name else single["pipeline_seconds"]
            many = comparison["components"].get(name, {}).get("wall_seconds") if name else \
                comparison["pipeline_seconds"]
            if one is not None and many is not None:
                lines.append(f"    {name or 'whole run':28s}{one:10.1f}{many:10.1f}   x{many / one:.2f}")
    lines += common.goal_lines(results, GOALS)
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    runs = results["runs"]
    sizes = [r["images"] for r in runs]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    components = list(dict.fromkeys(c for r in runs for c, t in r["components"].items() if t["wall_seconds"] >= 1))
    bottom = np.zeros(len(runs))
    positions = np.arange(len(runs))
    for name in components:
        values = np.array([r["components"].get(name, {}).get("wall_seconds", 0) / r["images"] for r in runs])
        left.bar(positions, values, 0.5, bottom=bottom, label=name)
        bottom += values
    left.plot(positions, [r["anchor_seconds"] / r["images"] for r in runs], "k_", markersize=40, mew=2,
              label="physical anchor")
    left.set_xticks(positions, [str(s) for s in sizes])
    left.set_xlabel("images")
    left.set_ylabel("seconds per image")
    left.set_title("Where the time goes, per image")
    left.legend(fontsize=7)
    right.plot(sizes, [r["peak_rss_bytes"] / 1e9 for r in runs], "o-", label="peak RSS (GB)")
    right.plot(sizes, [r["peak_temporary_bytes"] / 1e9 for r in runs], "s-", label="peak temporary disk (GB)")
    right.plot(sizes, [r["source_bytes"] / 1e9 for r in runs], "^--", label="source images (GB)")
    right.set_xscale("log")
    right.set_xlabel("images")
    right.set_title("Memory and disk")
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    def add_arguments(parser):
        parser.add_argument("--sizes", type=common.int_list, default=list(DEFAULT_SIZES),
                            help="images per run, comma-separated (default 300,3000,10000; capped at 9716)")
        parser.add_argument("--plot", help="also draw the figure to this PNG file")
        parser.add_argument("--compare-workers", type=int, default=2, metavar="N",
                            help="also run the middle size with N Beam worker processes (--beam-workers N) and "
                                 "compare the Beam components' times; 0 skips it (default 2)")

    return common.run_cli(__doc__, run, render, argv, add_arguments=add_arguments,
                          after=common.plot_when_asked(plot), run_takes_args=True)


if __name__ == "__main__":
    sys.exit(main())
