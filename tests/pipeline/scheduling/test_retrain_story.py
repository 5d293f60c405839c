"""The production story, end to end through `hubtfx retrain` on generated spans (real pipeline, tiny module).

span 1 -> pushed; span 2 (more data) -> compared with span 1's model and pushed; span 3 (labels shuffled) -> not
blessed, serving unchanged; span 4 (a class lost from the eval split) -> ExampleValidator anomaly, stopped before
training; no new span -> nothing to do. Every served version survives every step.
"""
import os
import random
import shutil

import numpy as np
import pytest
from PIL import Image
from tfx.components.example_gen import base_example_gen_executor

from hubtfx.components.example_gen import component as example_gen_component
from hubtfx.components.example_gen.executor import make_example
from hubtfx.components.pusher import serving
from hubtfx.pipeline.cli import commands

EVAL_PERCENT = 20
# Classes the tiny random-weight module separates reliably (it knows no shapes), so clean spans get blessed.
COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 1.0, 0.1), "blue": (0.1, 0.1, 1.0)}


def _retrain(capsys, data_root, output_dir, module):
    code = commands.main(["retrain", "--data-root", data_root, "--output-dir", output_dir, "--hub-handle", module,
                     "--span-window", "2", "--eval-percent", str(EVAL_PERCENT),
                     "--stage2-epochs", "0", "--batch-size", "8",
                     "--accuracy-threshold", "0.7", "--max-accuracy-drop", "0.05"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _served(output_dir):
    """version -> fingerprint of every served version."""
    base = os.path.join(output_dir, "serving", "hubtfx")
    return {v: serving.served_fingerprint(os.path.join(base, str(v))) for v in serving.served_versions(base)}


def _add_span(data_root, span, images_per_class, seed):
    """span-<span>/<colour>/<n>.png: noisy images of one dominant colour per class."""
    rng = np.random.default_rng(seed)
    span_dir = os.path.join(data_root, f"span-{span}")
    for name, colour in COLOURS.items():
        os.makedirs(os.path.join(span_dir, name))
        for index in range(images_per_class):
            pixels = np.array(colour) * rng.uniform(0.4, 1.0) + rng.normal(0, 0.15, (32, 32, 3))
            image = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), "RGB")
            image.save(os.path.join(span_dir, name, f"s{span}_{index:03d}.png"))
    return span_dir


def _shuffle_labels(span_dir, seed=3):
    """Moves every image into a random class folder: the labels no longer say anything about the images."""
    files = sorted((c, f) for c in os.listdir(span_dir) for f in os.listdir(os.path.join(span_dir, c)))
    classes = sorted(os.listdir(span_dir))
    rng = random.Random(seed)
    for class_name, file_name in files:
        target = rng.choice(classes)
        os.replace(os.path.join(span_dir, class_name, file_name), os.path.join(span_dir, target, f"x_{file_name}"))


def _split_of(relative_path):
    example = make_example(b"", 0, "", relative_path)
    split_config = example_gen_component.make_output_config(EVAL_PERCENT).split_config
    buckets = [100 - EVAL_PERCENT, 100]
    index = base_example_gen_executor._PartitionFn(example, 2, buckets, split_config)  # pylint: disable=protected-access
    return ("train", "eval")[index]


def _span_missing_a_class_in_eval(data_root, span, source_span_dir):
    """Two class folders, but the second holds one image that lands in 'train': 'eval' has a single class."""
    span_dir = os.path.join(data_root, f"span-{span}")
    shutil.copytree(os.path.join(source_span_dir, "red"), os.path.join(span_dir, "red"))
    assert {_split_of(f"red/{f}") for f in os.listdir(os.path.join(span_dir, "red"))} == {"train", "eval"}
    name = next(f"late_{i}.png" for i in range(1000) if _split_of(f"green/late_{i}.png") == "train")
    green = sorted(os.listdir(os.path.join(source_span_dir, "green")))[0]
    os.makedirs(os.path.join(span_dir, "green"))
    shutil.copy(os.path.join(source_span_dir, "green", green), os.path.join(span_dir, "green", name))


@pytest.mark.slow
def test_scheduled_retraining_story(tmp_path, tiny_module, capsys):
    data_root, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    os.makedirs(data_root)
    span1 = _add_span(data_root, 1, images_per_class=10, seed=1)

    code, out = _retrain(capsys, data_root, output_dir, tiny_module)
    assert code == commands.EXIT_PUSHED, out
    after1 = _served(output_dir)
    assert len(after1) == 1

    code, out = _retrain(capsys, data_root, output_dir, tiny_module)
    assert code == commands.EXIT_OK and "nothing new" in out, out

    _add_span(data_root, 2, images_per_class=16, seed=2)
    code, out = _retrain(capsys, data_root, output_dir, tiny_module)
    assert code == commands.EXIT_PUSHED, out
    after2 = _served(output_dir)
    assert len(after2) == 2 and after1.items() <= after2.items()

    _shuffle_labels(_add_span(data_root, 3, images_per_class=16, seed=3))
    code, out = _retrain(capsys, data_root, output_dir, tiny_module)
    assert code == commands.EXIT_NOT_BLESSED, out
    assert "NOT blessed" in out
    assert _served(output_dir) == after2

    _span_missing_a_class_in_eval(data_root, 4, span1)
    code, out = _retrain(capsys, data_root, output_dir, tiny_module)
    assert code == commands.EXIT_USAGE, out
    assert "stopped before training" in out and "eval / label_name" in out and "unique values" in out
    assert _served(output_dir) == after2

    code, out = _retrain(capsys, data_root, output_dir, tiny_module)
    assert code == commands.EXIT_OK and "span 4" in out, out
    assert _served(output_dir) == after2


def test_a_span_with_anomalies_stops_before_training_and_keeps_serving(tmp_path, tiny_module, capsys):
    """The default-suite slice of the story: pushed, then bad data rejected once with the anomalies listed."""
    data_root, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    os.makedirs(data_root)
    span1 = _add_span(data_root, 1, images_per_class=10, seed=1)
    code, out = _retrain(capsys, data_root, output_dir, tiny_module)
    assert code == commands.EXIT_PUSHED, out
    served = _served(output_dir)

    _span_missing_a_class_in_eval(data_root, 2, span1)
    code, out = _retrain(capsys, data_root, output_dir, tiny_module)
    assert code == commands.EXIT_USAGE, out
    assert "eval / label_name: Expected at least 2 unique values" in out
    assert "Transform" not in [line.split()[-2] for line in out.splitlines() if "is running" in line]
    assert _served(output_dir) == served

    code, out = _retrain(capsys, data_root, output_dir, tiny_module)
    assert code == commands.EXIT_OK and "nothing new" in out and "bad data" in out, out
