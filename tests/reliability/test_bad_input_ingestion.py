"""ExampleGen on the bad-input corpus: every file seen is used or skipped with its reason, good images all used."""
import glob
import io
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from hubtfx.components.common import artifact_files
from hubtfx.components.example_gen import executor as executor_lib
from hubtfx.components.example_gen.component import make_output_config
from hubtfx.components.example_gen.layout import DataLayoutError, scan_layout
from hubtfx.components.transform import image_ops, preprocessing
from hubtfx.pipeline.datasets.sample_data import generate_dataset


def _ingest(input_base: str, output_uri: str):
    """Runs the real executor (Beam, in memory); returns (ingestion report, filenames of the written examples)."""
    examples = standard_artifacts.Examples()
    examples.uri = output_uri
    input_config = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="single_split", pattern="*/*")])
    executor_lib.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, {
        standard_component_specs.INPUT_BASE_KEY: input_base,
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(make_output_config(30)),
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        executor_lib.LABEL_MAP_PATH_KEY: None,
        "span": 0,
    })
    with open(os.path.join(output_uri, artifact_files.INGESTION_REPORT_FILE), encoding="utf-8") as handle:
        report = json.load(handle)
    filenames = []
    for path in glob.glob(os.path.join(output_uri, "Split-*", "*.gz")):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            filenames.append(example.features.feature["filename"].bytes_list.value[0].decode("utf-8"))
    return report, filenames


@pytest.fixture(scope="module")
def ingested(corpus, tmp_path_factory):
    return _ingest(corpus.root, str(tmp_path_factory.mktemp("examples")))


def test_every_file_seen_is_used_or_skipped_and_counts_add_up(corpus, ingested):
    report, written = ingested
    assert report["files_seen"] == len(corpus.cases)
    assert report["examples_written"] + len(report["skipped"]) == report["files_seen"]
    assert sorted(written) == sorted(path for path, outcome in corpus.cases.items() if not outcome.ingest)
    for ignored in corpus.ignored:
        assert ignored not in written and ignored not in {record["file"] for record in report["skipped"]}


def test_each_bad_file_is_skipped_with_its_own_reason(corpus, ingested):
    report, _ = ingested
    skipped = {record["file"]: record["reason"] for record in report["skipped"]}
    expected = {path: outcome.ingest for path, outcome in corpus.cases.items() if outcome.ingest}
    assert set(skipped) == set(expected)
    for path, reason in skipped.items():
        assert reason.startswith(expected[path]), (path, reason)
    assert skipped["square/huge.png"].endswith(f"limit of {image_ops.MAX_PIXELS}; downscale it")
    assert os.path.realpath(os.path.join(corpus.root, "..", "outside", "secret.png")) in skipped[
        "circle/link-outside.png"]


def test_a_huge_image_is_refused_from_its_header_without_decoding(corpus, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(tf.io, "decode_image", no_decoding)
    reason = executor_lib.decode_failure_reason(corpus.read("square/huge.png"))
    assert reason == "image is 12000 x 12000 pixels, over the limit of 50000000; downscale it"


def test_serving_check_refuses_a_huge_image_without_decoding(corpus, monkeypatch):
    # A decode that always fails: had it run, the verdict would be "corrupt", not "over the limit".
    monkeypatch.setattr(image_ops, "_decode", lambda raw: tf.io.decode_png(b"not a png"))
    errors = image_ops.image_errors(tf.constant([corpus.read("square/huge.png")])).numpy()
    assert errors[0].decode().startswith("image is 12000 x 12000 pixels, over the limit")


@pytest.mark.parametrize("fmt, side", [("JPEG", 3000), ("PNG", 2600), ("GIF", 2600), ("BMP", 2600)])
def test_header_dimensions_match_the_decoded_size_for_every_format(fmt, side):
    data = _encode(Image.new("RGB", (side, side // 2)), fmt)
    assert image_ops.header_dimensions(data).numpy().tolist() == [side // 2, side]
    errors = image_ops.image_errors(tf.constant([data]), max_pixels=side * side // 2 - 1).numpy()
    assert errors[0].decode().startswith(f"image is {side} x {side // 2} pixels, over the limit")


def _encode(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_names_that_are_not_utf8_are_refused_naming_them(tmp_path):
    generate_dataset(str(tmp_path), classes=["circle", "square"], images_per_class=2, min_size=24, max_size=32)
    bad_file = os.path.join(os.fsencode(tmp_path), b"circle", b"caf\xe9.png")
    with open(bad_file, "wb") as handle:
        handle.write(_encode(Image.new("RGB", (8, 8)), "PNG"))
    with pytest.raises(DataLayoutError, match=re.escape(r"not UTF-8: [b'caf\xe9.png']. Rename them")):
        scan_layout(str(tmp_path))
    os.remove(bad_file)
    os.makedirs(os.path.join(os.fsencode(tmp_path), b"d\xe9j\xe0 vu"))
    with pytest.raises(DataLayoutError, match=re.escape(r"not UTF-8: [b'd\xe9j\xe0 vu']")):
        scan_layout(str(tmp_path))


def test_exif_orientation_is_not_applied_the_stored_pixels_are_used(corpus):
    """Training (Transform's preprocessing_fn) and serving share decode_rgb; both see the stored landscape."""
    data = corpus.read("square/exif-rotated.jpg")
    decoded = image_ops.decode_rgb(data).numpy()
    assert decoded.shape == (40, 80, 3), "rotated to portrait"
    np.testing.assert_allclose(decoded[:, :36].mean(axis=(0, 1)), [255, 0, 0], atol=8)
    np.testing.assert_allclose(decoded[:, 44:].mean(axis=(0, 1)), [0, 0, 255], atol=8)
    transformed = preprocessing.preprocessing_fn({"image_raw": tf.constant([[data]])},
                                                 {"image_size": [40, 80], "value_range": [0.0, 255.0]})["image"]
    assert np.abs(transformed.numpy()[0] - decoded).max() <= 1.0
