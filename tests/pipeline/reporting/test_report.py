"""The HTML run report and the per-class evaluation, on one real local pipeline run over tiny data."""
import base64
import dataclasses
import datetime
import glob
import html.parser
import io
import json
import logging
import os

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from PIL import Image
from ml_metadata.metadata_store import metadata_store
from tensorflow_model_analysis.proto import validation_result_pb2

from hubtfx.pipeline import local_runner
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.datasets import sample_data
from hubtfx.pipeline.hub_modules import module_resolution
from hubtfx.pipeline.pipeline import eval_config
from hubtfx.pipeline.reporting import eval_results, report, timing

# Not an image, so ExampleGen skips it and the report must list it: its name must come out as text, not markup.
HOSTILE_NAME = '<script>alert("x")&.jpg'
SECTIONS = {"data", "skipped", "training", "evaluation", "per-class", "baseline", "blessing", "module", "timing",
            "misclassified"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _ReportParser(html.parser.HTMLParser):
    """Collects what the assertions need: element ids, start tags, images and the visible text."""

    def __init__(self):
        super().__init__()
        self.ids, self.tags, self.images, self.text = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs)

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def module(tiny_module):
    """The ResolvedModule of every run in this file."""
    return module_resolution.resolve(PipelineConfig(hub_handle=tiny_module))


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_module, module):
    """One pipeline run (the report is written by run_local), its report parsed, and the facts behind it."""
    work = tmp_path_factory.mktemp("report_run")
    data_root = str(work / "images")
    sample_data.generate_dataset(data_root, images_per_class=8, seed=1)
    with open(os.path.join(data_root, "circle", HOSTILE_NAME), "wb") as f:
        f.write(b"plain text, not an image")
    config = PipelineConfig(
        data_root=data_root, output_dir=str(work / "out"), hub_handle=tiny_module, min_validation_examples=2,
        stage2_epochs=1, accuracy_threshold=0.0, batch_size=8, stage2_significance=1.0)
    summary = local_runner.run_local(config, module)
    with open(summary.report_path, encoding="utf-8") as f:
        page = f.read()
    parser = _ReportParser()
    parser.feed(page)
    facts = report.collect(config, module, local_runner.metadata_connection_config(config))
    return config, summary, page, parser, facts


def _decoded_pngs(parser):
    return {image["alt"]: base64.b64decode(image["src"].split(",", 1)[1])
            for image in parser.images if image["src"].startswith("data:image/png;base64,")}


def test_run_writes_the_report_and_prints_its_path(run):
    config, summary, page, _, _ = run
    reports = os.path.join(config.output_dir, "reports")
    assert os.path.dirname(summary.report_path) == reports
    assert os.path.basename(summary.report_path).startswith("run-")
    with open(os.path.join(reports, "latest.html"), encoding="utf-8") as f:
        assert f.read() == page
    assert f"report      {summary.report_path}" in summary.render()


def test_report_has_every_section_and_no_external_resources(run):
    _, _, page, parser, _ = run
    assert SECTIONS <= parser.ids
    assert "script" not in parser.tags and "link" not in parser.tags
    assert all(image["src"].startswith("data:image/png;base64,") for image in parser.images)
    assert "http://" not in page and "https://" not in page


def test_plots_and_thumbnails_are_embedded_pngs(run):
    _, _, _, parser, facts = run
    pngs = _decoded_pngs(parser)
    assert len(pngs) >= 3
    for png in pngs.values():
        assert png.startswith(PNG_MAGIC)
        Image.open(io.BytesIO(png)).verify()
    assert {"Confusion matrix", "Training curves: stage2"} <= set(pngs)
    wrong = int(facts.evaluation.confusion.sum() - np.trace(facts.evaluation.confusion))
    thumbnails = [alt for alt in pngs if alt.startswith("Misclassified: ")]
    assert wrong > 0, "the tiny model is expected to get some eval images wrong"
    assert len(thumbnails) == min(wrong, report.MAX_THUMBNAILS)


def test_where_the_time_went_is_in_the_summary_the_report_and_a_json_beside_it(run):
    config, summary, page, parser, _ = run
    components = {c.component: c for c in summary.timing.components}
    assert {"ImageFolderExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator"} <= set(components)
    trainer = components["Trainer"]
    assert trainer.status == "ran" and trainer.wall_seconds > 0 and trainer.cpu_seconds > 0
    assert trainer.peak_rss_bytes > 100e6  # TensorFlow alone holds more
    assert summary.timing.wall_seconds >= sum(c.wall_seconds for c in summary.timing.components)
    rendered = summary.render()
    assert "  time        " in rendered and "Trainer" in rendered.split("  time        ")[1]
    assert f"timing      {summary.timing_path}" in rendered
    reports = os.path.join(config.output_dir, "reports")
    assert os.path.splitext(os.path.basename(summary.report_path))[0] + timing.TIMING_FILE_SUFFIX == \
        os.path.basename(summary.timing_path)
    for path in (summary.timing_path, os.path.join(reports, timing.LATEST_TIMING)):
        with open(path, encoding="utf-8") as f:
            written = json.load(f)
        assert written == summary.timing.to_json() and written["components"][0]["cpu_seconds"] > 0
    assert "wall and CPU seconds per component" in _decoded_pngs(parser)
    section = page.split('<section id="timing">')[1].split("</section>")[0]
    assert all(name in section for name in components)


def test_report_names_the_module_the_verdict_and_the_missing_baseline(run, module):
    config, summary, _, parser, _ = run
    text = " ".join(parser.text)
    assert module.sha256 in text and config.hub_handle in text
    assert summary.blessed and "BLESSED" in text
    assert "First model: no baseline" in text
    assert "No baseline yet, so the change threshold did not apply." in text


def test_user_provided_file_names_are_escaped(run):
    _, summary, page, parser, _ = run
    assert any(s["file"].endswith(HOSTILE_NAME) for s in summary.skipped)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(" in page and "&amp;.jpg" in page  # whichever entity the escaper uses for '"'
    assert any(HOSTILE_NAME in text for text in parser.text)


def test_per_class_precision_and_recall_come_from_the_evaluation(run):
    config, _, _, _, facts = run
    evaluation = facts.evaluation
    assert evaluation.confusion.shape == (5, 5)
    assert evaluation.confusion.sum() == evaluation.metrics["example_count"]
    store = metadata_store.MetadataStore(local_runner.metadata_connection_config(config))
    evaluation_uri = store.get_artifacts_by_type("ModelEvaluation")[-1].uri
    # Sliced by true label, accuracy is that class's recall: TFMA's slices check the matrix-derived recall.
    slice_accuracy = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        for key_and_value in metrics.metric_keys_and_values:
            if metrics.slice_key.single_slice_keys and key_and_value.key.name == eval_results.ACCURACY:
                class_name = metrics.slice_key.single_slice_keys[0].bytes_value.decode()
                slice_accuracy[class_name] = key_and_value.value.double_value.value
    per_class = {c.name: c for c in eval_results.per_class_metrics(evaluation.confusion, facts.class_names)}
    assert slice_accuracy and set(slice_accuracy) <= set(per_class)
    for class_name, accuracy in slice_accuracy.items():
        assert per_class[class_name].recall == pytest.approx(accuracy)


def test_per_class_metrics_of_a_known_matrix():
    matrix = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 4]])
    circle, square, star = eval_results.per_class_metrics(matrix, ["circle", "square", "star"])
    assert (circle.precision, circle.recall) == (pytest.approx(3 / 5), pytest.approx(3 / 4))
    assert (square.support, square.predicted, square.precision, square.recall) == (0, 1, 0.0, None)
    assert (star.precision, star.recall) == (1.0, pytest.approx(4 / 6))


def test_eval_config_keeps_the_thresholds_and_adds_the_confusion_matrix():
    config = eval_config(PipelineConfig(accuracy_threshold=0.7, max_accuracy_drop=0.05))
    metrics = {m.class_name: m for m in config.metrics_specs[0].metrics}
    assert "MultiClassConfusionMatrixPlot" in metrics
    (overall_only,) = metrics["SparseCategoricalAccuracy"].per_slice_thresholds
    assert list(overall_only.slicing_specs) == [tfma.SlicingSpec()]  # one weak class must not block blessing
    threshold = overall_only.threshold
    assert threshold.value_threshold.lower_bound.value == 0.7
    assert threshold.change_threshold.absolute.value == pytest.approx(-0.05)


def test_a_rejected_model_shows_the_failed_thresholds(run):
    _, _, _, _, facts = run
    validation = validation_result_pb2.ValidationResult(validation_ok=False)
    failure = validation.metric_validations_per_slice.add().failures.add()
    failure.metric_key.name = eval_results.ACCURACY
    failure.metric_value.double_value.value = 0.42
    failure.metric_threshold.value_threshold.lower_bound.value = 0.5
    change = validation.metric_validations_per_slice[0].failures.add()
    change.metric_key.name = eval_results.ACCURACY
    change.metric_key.is_diff = True
    change.metric_value.double_value.value = -0.1
    change.metric_threshold.change_threshold.absolute.value = -0.05
    change.metric_threshold.change_threshold.direction = tfma.MetricDirection.HIGHER_IS_BETTER
    rejected = dataclasses.replace(
        facts, summary=dataclasses.replace(facts.summary, blessed=False, pushed=False),
        evaluation=dataclasses.replace(facts.evaluation, validation_ok=False,
                                       failures=eval_results.threshold_failures(validation)))
    section = report.blessing_section(rejected)
    assert "NOT BLESSED" in section
    assert "sparse_categorical_accuracy is 0.4200; it must be at least 0.5000." in section
    assert "changed by -0.1000 against the baseline; the change must be at least -0.0500." in section


def test_a_comparison_with_a_baseline_shows_the_changes(run):
    _, _, _, _, facts = run
    compared = dataclasses.replace(facts, baseline_model="/models/7", evaluation=dataclasses.replace(
        facts.evaluation, baseline_metrics={eval_results.ACCURACY: 0.5}, diffs={eval_results.ACCURACY: -0.125}))
    section = report.baseline_section(compared)
    assert "/models/7" in section and "-0.1250" in section and "First model" not in section


def test_a_report_failure_is_logged_and_does_not_fail_the_run(run, module, monkeypatch, caplog):
    config = run[0]

    def broken(*_):
        raise OSError("disk full")

    monkeypatch.setattr(report, "write_report", broken)
    with caplog.at_level(logging.WARNING):
        assert local_runner.write_report_or_warn(config, module, timing.RunTiming(), datetime.datetime.now()) == ""
    assert "Could not write the HTML run report" in caplog.text and "disk full" in caplog.text


def test_a_skipped_comparison_shows_why_and_that_only_the_absolute_threshold_gated(run):
    _, _, _, _, facts = run
    reason = "the latest blessed model has 3 classes (a, b, c), this one 4 (a, b, c, d): added d"
    skipped = dataclasses.replace(facts, skipped_baseline_model="/models/3", summary=dataclasses.replace(
        facts.summary, baseline_skipped_reason=reason))
    section = html.unescape(report.baseline_section(skipped))
    assert "Not compared with the latest blessed model, <code>/models/3</code>: " + reason in section
    assert "only the absolute threshold gated this model" in section and "First model" not in section
    assert any(reason in r and "change threshold did not apply" in r for r in report.blessing_reasons(skipped))
    assert f"baseline    {reason}: no comparison" in skipped.summary.render()


@pytest.mark.slow
def test_a_second_run_compares_with_the_blessed_first_model(run, module):
    """Last in this file: it adds a run to the shared store (the earlier tests use facts read before it)."""
    config = run[0]
    summary = local_runner.run_local(config, module)
    facts = report.collect(config, module, local_runner.metadata_connection_config(config))
    assert facts.evaluation.has_baseline and eval_results.ACCURACY in facts.evaluation.diffs
    assert facts.baseline_model
    with open(summary.report_path, encoding="utf-8") as f:
        page = f.read()
    assert "First model" not in page and "against the baseline" in page
    assert len(glob.glob(os.path.join(config.output_dir, "reports", "run-*.html"))) == 2

