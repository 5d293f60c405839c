"""Tests of the deterministic sample dataset generator."""
import os

import numpy as np
import pytest
from PIL import Image

from hubtfx.pipeline.datasets.sample_data import CLASS_NAMES, generate_dataset


def _read_tree(root):
    """{relative path: bytes} of every file under root."""
    tree = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                tree[os.path.relpath(path, root)] = handle.read()
    return tree


@pytest.fixture(scope="module")
def default_dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("default"))
    return root, generate_dataset(root, images_per_class=30, seed=0)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    small = dict(images_per_class=4, min_size=48, max_size=80)
    generate_dataset(str(tmp_path / "a"), seed=7, **small)
    generate_dataset(str(tmp_path / "b"), seed=7, **small)
    generate_dataset(str(tmp_path / "c"), seed=8, **small)
    first, second, other = (_read_tree(tmp_path / name) for name in "abc")
    assert first == second
    assert len(first) == 4 * len(CLASS_NAMES)
    assert len(other) == len(first)
    assert not set(first.values()) & set(other.values())


def test_layout_is_one_folder_per_class_and_summary_matches_disk(default_dataset):
    root, summary = default_dataset
    assert sorted(os.listdir(root)) == sorted(CLASS_NAMES)
    assert summary["classes"] == list(CLASS_NAMES)
    assert summary["num_images"] == 150
    assert summary["per_class"] == {name: 30 for name in CLASS_NAMES}
    assert sorted(_read_tree(root)) == summary["files"]
    for relative_path in summary["files"]:
        class_name, file_name = relative_path.split(os.sep)
        assert file_name.startswith(class_name + "_")
        assert file_name.endswith((".jpg", ".png"))


def test_formats_sizes_and_grayscale_are_mixed(default_dataset):
    root, summary = default_dataset
    formats, grayscale, sizes = {"JPEG": 0, "PNG": 0}, 0, set()
    for relative_path in summary["files"]:
        with Image.open(os.path.join(root, relative_path)) as image:
            assert image.format == ("PNG" if relative_path.endswith(".png") else "JPEG")
            formats[image.format] += 1
            grayscale += image.mode == "L"
            sizes.add(image.size)
    assert formats == {"JPEG": summary["formats"]["jpeg"], "PNG": summary["formats"]["png"]}
    assert min(formats.values()) >= 30
    assert grayscale == summary["grayscale"]
    assert 0.05 <= grayscale / 150 <= 0.3
    assert all(96 <= side <= 320 for size in sizes for side in size)
    assert sum(width != height for width, height in sizes) >= 100
    assert max(max(size) for size in sizes) - min(min(size) for size in sizes) >= 150


def test_spans_hold_new_images_of_every_class(tmp_path):
    summary = generate_dataset(str(tmp_path), images_per_class=2, spans=2, min_size=32, max_size=48)
    assert sorted(os.listdir(tmp_path)) == ["span-1", "span-2"]
    for span in ("span-1", "span-2"):
        assert sorted(os.listdir(tmp_path / span)) == sorted(CLASS_NAMES)
    span_1, span_2 = _read_tree(tmp_path / "span-1"), _read_tree(tmp_path / "span-2")
    assert len(span_1) == len(span_2) == 2 * len(CLASS_NAMES)
    assert not set(span_1.values()) & set(span_2.values())
    assert not set(span_1) & set(span_2), "file names must differ across spans"
    assert summary["num_images"] == 4 * len(CLASS_NAMES)


def test_class_subset_keeps_images_of_the_chosen_classes(tmp_path):
    small = dict(images_per_class=2, min_size=32, max_size=48)
    generate_dataset(str(tmp_path / "all"), **small)
    generate_dataset(str(tmp_path / "some"), classes=["star", "circle"], **small)
    subset = _read_tree(tmp_path / "some")
    assert sorted(os.listdir(tmp_path / "some")) == ["circle", "star"]
    assert subset == {path: data for path, data in _read_tree(tmp_path / "all").items() if path in subset}
    with pytest.raises(ValueError, match="subset of"):
        generate_dataset(str(tmp_path / "bad"), classes=["hexagon"], **small)


def test_mean_colour_does_not_separate_the_classes(default_dataset):
    """Nearest class mean on each image's mean RGB, fitted on half the images, tested on the other half."""
    root, summary = default_dataset
    features, labels = [], []
    for relative_path in summary["files"]:
        with Image.open(os.path.join(root, relative_path)) as image:
            features.append(np.asarray(image.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)))
        labels.append(CLASS_NAMES.index(relative_path.split(os.sep)[0]))
    features, labels = np.array(features), np.array(labels)
    fit, held_out = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
    means = np.stack([features[fit & (labels == k)].mean(axis=0) for k in range(len(CLASS_NAMES))])
    distances = np.linalg.norm(features[held_out][:, None, :] - means[None], axis=-1)
    accuracy = float((distances.argmin(axis=1) == labels[held_out]).mean())
    assert accuracy < 0.4, f"mean colour predicts the class with accuracy {accuracy:.2f} (chance 0.2)"
