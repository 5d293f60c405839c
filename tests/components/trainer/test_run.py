"""Trainer entry checks against a real Transform graph (built with tft_beam on two examples)."""
import io
import os

import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import schema_utils

from components.trainer import run
from components.transform import preprocessing


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 128, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def _transform_output(tmp_path, size) -> tft.TFTransformOutput:
    feature_spec = {"image_raw": tf.io.FixedLenFeature([1], tf.string),
                    "label": tf.io.FixedLenFeature([1], tf.int64)}
    metadata = tft.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    data = [{"image_raw": [_png()], "label": [1]}, {"image_raw": [_png()], "label": [0]}]
    output_dir = str(tmp_path / f"transform_{size[0]}")
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp"), force_tf_compat_v1=False):
        _, transform_fn = (data, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing.preprocessing_fn(inputs, {"image_size": size, "value_range": [0, 1]}))
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    return tft.TFTransformOutput(output_dir)


def test_transform_matching_the_module_passes_and_a_mismatch_names_both(tmp_path, tiny_module):
    assert run.check_transform_matches_module(_transform_output(tmp_path, [32, 32]), tiny_module).image_size == (
        32, 32)
    with pytest.raises(ValueError) as error:
        run.check_transform_matches_module(_transform_output(tmp_path, [24, 24]), tiny_module)
    assert "[24, 24, 3]" in str(error.value) and "[32, 32, 3]" in str(error.value)


def test_module_dir_accepts_the_importer_uri_with_or_without_format_serving(tiny_module):
    assert run.module_dir(tiny_module) == tiny_module
    assert run.module_dir(os.path.join(tiny_module, "Format-Serving")) == tiny_module
