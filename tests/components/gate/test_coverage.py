"""The gate's per-class coverage check: no class without training examples; classes never evaluated are named."""
import json
import logging
import os

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts

from hubtfx.components.common import artifact_files
from hubtfx.components.gate import anomalies as anomalies_lib
from hubtfx.components.gate import coverage as coverage_lib
from hubtfx.components.gate.component import AnomalyGate

CLASSES = ["blue", "purple", "red"]


def _examples(folder, span, per_class, classes=CLASSES):
    """An Examples artifact with the two files ImageFolderExampleGen writes at its root."""
    os.makedirs(folder)
    per_class = {name: {"used": t + e, "skipped": 0, "train": t, "eval": e} for name, (t, e) in per_class.items()}
    report = {"span": span, "per_class": per_class, "rebalanced": []}
    for name, payload in [(artifact_files.INGESTION_REPORT_FILE, report),
                          (artifact_files.LABEL_MAP_FILE, {"classes": classes})]:
        with open(os.path.join(folder, name), "w") as f:
            json.dump(payload, f)
    artifact = standard_artifacts.Examples()
    artifact.uri = str(folder)
    return artifact


def _no_anomalies(folder):
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(folder)
    artifact.split_names = artifact_utils.encode_split_names(["train", "eval"])
    for split in ("train", "eval"):
        os.makedirs(os.path.join(str(folder), f"Split-{split}"))
        with open(os.path.join(str(folder), f"Split-{split}", anomalies_lib.ANOMALIES_FILE), "wb") as f:
            f.write(anomalies_pb2.Anomalies().SerializeToString())
    return artifact


def test_a_label_map_class_missing_from_every_span_trained_on_stops_the_run(tmp_path):
    span_2 = _examples(tmp_path / "2", 2, {"blue": (5, 1), "red": (4, 2)})
    span_3 = _examples(tmp_path / "3", 3, {"blue": (5, 1), "red": (4, 2)})
    with pytest.raises(coverage_lib.ClassCoverageError) as error:
        AnomalyGate.test_call(anomalies=_no_anomalies(tmp_path / "a"), examples=span_3,
                              training_examples=[span_2, span_3])
    message = str(error.value)
    assert "class 'purple' of the label map has no training examples in spans 2, 3" in message
    assert "'blue'" not in message and "'red'" not in message
    for what_to_do in ("Add usable examples", "--span-window", "delete label_map.json"):
        assert what_to_do in message
    assert isinstance(error.value, anomalies_lib.DataAnomaliesError), "exit 2 and a recorded retrain outcome"


def test_a_class_only_in_an_older_span_of_the_window_is_trained_and_reported_as_never_evaluated(tmp_path, caplog):
    span_2 = _examples(tmp_path / "2", 2, {"blue": (5, 1), "purple": (2, 1), "red": (4, 2)})
    span_3 = _examples(tmp_path / "3", 3, {"blue": (5, 1), "red": (4, 2)})
    with caplog.at_level(logging.WARNING):
        AnomalyGate.test_call(anomalies=_no_anomalies(tmp_path / "a"), examples=span_3,
                              training_examples=[span_2, span_3])
    assert "class 'purple' has no eval examples (2 training)" in caplog.text
    coverage = coverage_lib.class_coverage(
        [coverage_lib.read_ingestion(e.uri) for e in (span_2, span_3)], coverage_lib.read_ingestion(span_3.uri))
    assert [(c.name, c.train, c.eval) for c in coverage] == [("blue", 10, 1), ("purple", 2, 0), ("red", 8, 2)]
    assert [c.name for c in coverage_lib.unevaluated(coverage)] == ["purple"]


def test_a_single_image_class_passes_the_gate_and_is_named_as_never_evaluated(tmp_path, caplog):
    examples = _examples(tmp_path / "1", None, {"blue": (5, 1), "purple": (1, 0), "red": (4, 2)})
    with caplog.at_level(logging.WARNING):
        AnomalyGate.test_call(anomalies=_no_anomalies(tmp_path / "a"), examples=examples,
                              training_examples=[examples])
    assert "class 'purple' has no eval examples (1 training)" in caplog.text
    assert "'blue'" not in caplog.text


def test_without_training_examples_the_gate_checks_the_examples_themselves(tmp_path, caplog):
    """On Vertex / Kubeflow the gate gets no `training_examples` when they are its `examples` (kubeflow.kfp_target)."""
    examples = _examples(tmp_path / "1", None, {"blue": (5, 1), "purple": (0, 2), "red": (4, 2)})
    with pytest.raises(coverage_lib.ClassCoverageError, match="class 'purple' of the label map has no training"):
        AnomalyGate.test_call(anomalies=_no_anomalies(tmp_path / "a"), examples=examples)


def test_reports_without_per_class_split_counts_are_not_recorded_rather_than_zero(tmp_path):
    """Examples ingested before the counts existed (a cached ExampleGen) must not fail or pass as zero."""
    examples = _examples(tmp_path / "1", None, {"blue": (5, 1), "red": (4, 2)}, classes=["blue", "red"])
    path = os.path.join(examples.uri, artifact_files.INGESTION_REPORT_FILE)
    with open(path) as f:
        report = json.load(f)
    report["per_class"] = {name: {"used": c["used"], "skipped": 0} for name, c in report["per_class"].items()}
    with open(path, "w") as f:
        json.dump(report, f)
    stored = coverage_lib.read_ingestion(examples.uri)
    coverage = coverage_lib.check([stored], stored)
    assert [(c.train, c.eval) for c in coverage] == [(None, None), (None, None)]
    assert not coverage_lib.unevaluated(coverage)
    assert "'blue', 'red' were not recorded" in coverage_lib.warnings(coverage)[0]
