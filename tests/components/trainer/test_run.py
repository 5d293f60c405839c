"""The Trainer's run_fn and entry checks against a real Transform graph (built with tft_beam on two examples)."""
import io
import json
import os

import numpy as np

import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import metadata_io, schema_utils
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx_bsl.public import tfxio

from hubtfx.components.common import artifact_files
from hubtfx.components.trainer import run
from hubtfx.components.transform import preprocessing


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
    metadata_io.write_metadata(metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
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


def _coloured_png(label: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((20, 20, 3)) * 100).astype(np.uint8)
    pixels[..., label] += 150
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _write_split(path, labels, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for i, label in enumerate(labels):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_coloured_png(label, seed + i)])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            })).SerializeToString())


def _dataset_factory(file_pattern, options, schema):
    return tfxio.TFExampleRecord(file_pattern=file_pattern, schema=schema).TensorFlowDataset(options)


def _run_trainer(tmp_path, tiny_module, transform_output, name, eval_labels):
    examples = tmp_path / name / "examples"
    train_labels = [i % 3 for i in range(36)]
    _write_split(str(examples / "Split-train" / "data.tfrecord"), train_labels, seed=0)
    _write_split(str(examples / "Split-eval" / "data.tfrecord"), eval_labels, seed=1000)
    (examples / artifact_files.LABEL_MAP_FILE).write_text(json.dumps({"classes": ["red", "green", "blue"]}))
    fn_args = FnArgs(
        train_files=[str(examples / "Split-train" / "*")], eval_files=[str(examples / "Split-eval" / "*")],
        transform_output=transform_output, serving_model_dir=str(tmp_path / name / "serving"),
        model_run_dir=str(tmp_path / name / "run"), base_model=tiny_module,
        custom_config={"batch_size": 8, "stage2_epochs": 2, "min_validation_examples": 3, "cv_folds": 3},
        data_accessor=DataAccessor(tf_dataset_factory=_dataset_factory, record_batch_factory=None,
                                   data_view_decode_fn=None))
    run.run_fn(fn_args)
    history = json.loads((tmp_path / name / "run" / artifact_files.TRAINING_HISTORY_FILE).read_text())
    model = tf.saved_model.load(str(tmp_path / name / "serving"))
    images = tf.constant([_coloured_png(i % 3, 99 + i) for i in range(6)])
    scores = model.signatures["serving_bytes"](image_bytes=images)
    transformed = model.tft_layer({"image_raw": tf.reshape(images, [-1, 1]),
                                   "label": tf.zeros([len(images), 1], tf.int64)})
    logits = model(transformed["image"], training=False)
    return history, scores["probabilities"].numpy(), logits.numpy()


def test_the_trainer_never_reads_the_eval_split_and_is_reproducible(tmp_path, tiny_module):
    """Every choice (levels, C, stage 2's epochs, the kept stage) and the exported model must be the same whether
    the eval split's labels are right or all wrong: the eval split belongs to the Evaluator."""
    _transform_output(tmp_path, [32, 32])
    transform_output = str(tmp_path / "transform_32")
    truthful, truthful_scores, logits = _run_trainer(tmp_path, tiny_module, transform_output, "a",
                                                     [i % 3 for i in range(9)])
    corrupted, corrupted_scores, _ = _run_trainer(tmp_path, tiny_module, transform_output, "b", [0] * 9)
    for history in (truthful, corrupted):  # wall times are the only thing allowed to differ
        del history["stage1_head"]["seconds"]
        for stage in history["stages"].values():
            del stage["seconds"]
    assert truthful["stage1_head"] == corrupted["stage1_head"]
    assert truthful["stages"] == corrupted["stages"] and truthful["chosen_stage"] == corrupted["chosen_stage"]
    np.testing.assert_array_equal(truthful_scores, corrupted_scores)
    assert (truthful_scores.argmax(axis=1) == [i % 3 for i in range(6)]).mean() >= 0.5  # it did learn
    # What is served is the classifier's logits calibrated by the recorded temperature.
    assert truthful["temperature"] > 0
    np.testing.assert_allclose(truthful_scores, tf.nn.softmax(truthful["temperature"] * logits).numpy(), atol=1e-5)
