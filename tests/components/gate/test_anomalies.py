"""The anomaly gate's reading and listing of real TFDV anomalies."""
import os

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics.stats_impl import generate_statistics_in_memory
from tfx.types import artifact_utils, standard_artifacts
from tfx_bsl.coders import example_coder

from hubtfx.components.gate import anomalies as anomalies_lib
from hubtfx.pipeline.pipeline import CURATED_SCHEMA


def _example(label_feature, label_name=b"daisy"):
    def text(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature={
        "image_raw": text(b"\xff\xd8\xff"), "label": label_feature, "label_name": text(label_name),
        "filename": text(b"daisy/1.jpg")})).SerializeToString()


def _validate(examples):
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(examples)
    statistics = generate_statistics_in_memory(batch, tfdv.StatsOptions())
    return tfdv.validate_statistics(statistics, tfdv.load_schema_text(CURATED_SCHEMA))


def _artifact(tmp_path, per_split):
    """An ExampleAnomalies artifact laid out as ExampleValidator writes it."""
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path)
    artifact.split_names = artifact_utils.encode_split_names(sorted(per_split))
    for split, proto in per_split.items():
        folder = os.path.join(str(tmp_path), f"Split-{split}")
        os.makedirs(folder)
        with open(os.path.join(folder, anomalies_lib.ANOMALIES_FILE), "wb") as f:
            f.write(proto.SerializeToString())
    return artifact


def test_wrong_type_and_single_class_are_listed_per_split(tmp_path):
    wrong_type = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"0"]))
    good = tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))
    clean = [_example(good, b"daisy"), _example(good, b"rose")]
    wrong = [_example(wrong_type, b"daisy"), _example(wrong_type, b"rose")]
    artifact = _artifact(tmp_path, {"train": _validate(wrong), "eval": _validate(clean)})
    lines = anomalies_lib.describe(anomalies_lib.read_split_anomalies(artifact))
    assert lines == ["train / label: Expected data of type: INT but got STRING"]


def test_a_split_with_one_class_violates_the_curated_schema():
    good = tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))
    anomalies = _validate([_example(good, b"daisy")] * 3)
    lines = anomalies_lib.describe({"eval": anomalies})
    assert len(lines) == 1 and lines[0].startswith("eval / label_name: Expected at least 2 unique values")


def test_the_error_lists_every_anomaly_and_says_what_to_do():
    error = anomalies_lib.anomalies_error(["eval / label: a", "train / label: b"], 4, "schemas/schema.pbtxt")
    message = str(error)
    assert isinstance(error, ValueError)
    assert "2 anomalies in the data of span 4" in message and "stopped before training" in message
    assert "  eval / label: a\n  train / label: b" in message and "new span" in message


@pytest.mark.parametrize("count, word", [(1, "anomaly"), (3, "anomalies")])
def test_the_count_is_spelled_right(count, word):
    assert f"{count} {word} " in str(anomalies_lib.anomalies_error(["x"] * count, 1, "schema"))
