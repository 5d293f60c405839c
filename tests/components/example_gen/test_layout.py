"""Tests of the image-folder layout scan (no decoding, no Beam)."""
import os

import pytest
from tfx.proto import range_config_pb2

from hubtfx.components.example_gen.layout import DataLayoutError, class_root_for_pattern, scan_layout, split_pattern
from hubtfx.pipeline.datasets.sample_data import generate_dataset

_TINY = dict(images_per_class=3, min_size=24, max_size=32)


def _touch(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def test_scan_lists_class_folders_and_ignores_root_files_hidden_entries_and_nested_folders(tmp_path):
    generate_dataset(str(tmp_path), classes=["square", "circle", "star"], **_TINY)
    _touch(str(tmp_path / "LICENSE.txt"))
    _touch(str(tmp_path / ".cache" / "x.jpg"))
    _touch(str(tmp_path / "circle" / ".DS_Store"))
    _touch(str(tmp_path / "circle" / "nested" / "deep.jpg"))
    _touch(str(tmp_path / "star" / "notes.txt"))  # a visible file: seen, later skipped as not an image

    layout = scan_layout(str(tmp_path))

    assert layout.root == str(tmp_path)
    assert layout.span is None
    assert layout.class_names == ["circle", "square", "star"]
    assert layout.file_counts == {"circle": 3, "square": 3, "star": 4}
    assert layout.num_files == 10
    paths = [path for path, _ in layout.relative_paths()]
    assert paths == sorted(paths) and paths[0].startswith("circle/circle_0000.")
    assert "star/notes.txt" in paths and not any(".DS_Store" in path or "nested" in path for path in paths)
    assert dict(layout.relative_paths())[layout.files["square"][0]] == "square"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: None, "is empty"),
        (lambda root: _touch(os.path.join(root, "LICENSE.txt")), "no class folders.*LICENSE.txt.*own sub-folder"),
        (lambda root: _touch(os.path.join(root, "daisy", "1.jpg")), "single class folder 'daisy'.*at least two"),
        (
            lambda root: [_touch(os.path.join(root, "daisy", "1.jpg")), _touch(os.path.join(root, "rose", ".keep"))],
            r"\['rose'\].*contain no files.*add files",
        ),
    ],
    ids=["empty_root", "no_class_folders", "single_class", "empty_class_folder"],
)
def test_bad_layouts_fail_with_a_message_that_says_what_to_fix(tmp_path, make, message):
    make(str(tmp_path))
    with pytest.raises(DataLayoutError, match=message):
        scan_layout(str(tmp_path))


def test_missing_input_base_fails(tmp_path):
    with pytest.raises(DataLayoutError, match="does not exist"):
        scan_layout(str(tmp_path / "nope"))


def test_spans_resolve_to_the_numerically_latest_span_or_the_configured_one(tmp_path):
    for span, seed in (("span-1", 1), ("span-2", 2), ("span-10", 10)):
        generate_dataset(str(tmp_path / span), seed=seed, classes=["circle", "cross"], **_TINY)
    _touch(str(tmp_path / "LICENSE.txt"))

    latest = scan_layout(str(tmp_path), use_spans=True)
    assert (latest.span, latest.root) == (10, str(tmp_path / "span-10"))
    assert latest.class_names == ["circle", "cross"]

    static = range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(start_span_number=2, end_span_number=2)
    )
    chosen = scan_layout(str(tmp_path), use_spans=True, range_config=static)
    assert (chosen.span, chosen.root) == (2, str(tmp_path / "span-2"))


def test_use_spans_without_span_folders_says_how_to_fix(tmp_path):
    generate_dataset(str(tmp_path), classes=["circle", "cross"], **_TINY)
    with pytest.raises(DataLayoutError, match="no span folder.*span-<N>/<class_name>.*without use_spans"):
        scan_layout(str(tmp_path), use_spans=True)


def test_class_root_for_resolved_patterns():
    assert split_pattern(False) == "*/*"
    assert split_pattern(True) == "span-{SPAN}/*/*"
    assert class_root_for_pattern("/data", "*/*") == "/data"
    assert class_root_for_pattern("gs://b/data", "span-3/*/*") == "gs://b/data/span-3"
    with pytest.raises(ValueError):
        class_root_for_pattern("/data", "*.jpg")
