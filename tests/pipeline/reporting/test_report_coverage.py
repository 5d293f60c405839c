"""What the run summary and the HTML report say about per-class coverage and about what was gated (no run)."""
import datetime
import html.parser

import numpy as np

from hubtfx.components.gate.coverage import ClassCoverage
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.reporting import eval_results, report
from hubtfx.pipeline.reporting.run_summary import RunSummary

CLASSES = [ClassCoverage("blue", 9, 3), ClassCoverage("purple", 3, 0), ClassCoverage("yellow", 1, 2)]
MOVED = [{"file": "yellow/yellow_004.png", "class": "yellow", "split": "train"}]


class _Rows(html.parser.HTMLParser):
    """Table rows as lists of cell texts, the text of the warning box, and all visible text."""

    def __init__(self):
        super().__init__()
        self.rows, self.text, self.warning, self._in_warning, self._in_cell = [], [], [], 0, False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        self._in_cell = self._in_cell or tag in ("td", "th")
        if tag == "div" and ("class", "warning") in attrs:
            self._in_warning = 1
        elif tag == "div" and self._in_warning:
            self._in_warning += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False
        if tag == "div" and self._in_warning:
            self._in_warning -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._in_warning:
            self.warning.append(data)
        if self._in_cell and data.strip():
            self.rows[-1].append(data)


def _summary(**kwargs):
    return RunSummary(data_root="/data", files_seen=18, examples_written=18, module="tiny", module_sha256="ab" * 32,
                      eval_accuracy=0.8, blessed=True, accuracy_threshold=0.5, classes=CLASSES, rebalanced=MOVED,
                      **kwargs)


def _facts(summary, validation_ok=True, failures=()):
    # Rows: actual class; columns: predicted. purple has no eval example.
    confusion = np.array([[3, 0, 0], [0, 0, 0], [1, 0, 1]])
    evaluation = eval_results.EvalResults(
        metrics={eval_results.ACCURACY: 0.8}, baseline_metrics={}, diffs={}, confusion=confusion,
        validation_ok=validation_ok, failures=list(failures))
    ingestion = [{"span": None, "per_split": {"train": 13, "eval": 5}, "rebalanced": MOVED, "per_class": {
        c.name: {"used": c.train + c.eval, "skipped": 0, "train": c.train, "eval": c.eval} for c in CLASSES}}]
    return report.RunFacts(config=PipelineConfig(accuracy_threshold=0.5), summary=summary, ingestion=ingestion,
                           history={}, class_names=[c.name for c in CLASSES], evaluation=evaluation,
                           baseline_model="", skipped_baseline_model="", module_handle="tiny",
                           module_sha256="ab" * 32, module_uri="/m",
                           misclassified=[])


def _render(facts):
    parser = _Rows()
    parser.feed(report.render(facts, datetime.datetime(2026, 11, 29, 12, 0)))
    return parser


def test_the_blessing_says_the_thresholds_gate_overall_accuracy_only():
    reasons = report.blessing_reasons(_facts(_summary()))
    assert "for each class" not in " ".join(reasons)
    assert reasons[0].startswith("Accuracy 0.8000 on the whole eval split reached the threshold 0.5000.")
    assert "apply to the overall accuracy only, not to each class" in reasons[0]
    assert any(r.startswith("Not checked: class 'purple' has no eval examples") for r in reasons)


def test_a_failed_blessing_still_names_the_classes_that_were_never_evaluated():
    reasons = report.blessing_reasons(_facts(_summary(), validation_ok=False, failures=["accuracy too low."]))
    assert reasons[0] == "accuracy too low."
    assert any("'purple' has no eval examples" in r for r in reasons)


def test_the_report_warns_prominently_and_lists_every_class_with_its_counts():
    parser = _render(_facts(_summary()))
    warning = " ".join(parser.warning)
    assert "the evaluation does not cover every class" in warning and "'purple'" in warning
    assert "'blue'" not in warning and "'yellow'" not in warning
    # The per-class precision/recall table keeps purple, with recall n/a, and shows training examples.
    assert ["purple", "3", "0", "0", "n/a", "n/a"] in parser.rows
    assert ["yellow", "1", "2", "1", "1.000", "0.500"] in parser.rows
    # Data: coverage over the run, and per span the split counts.
    assert ["purple", "3", "0"] in parser.rows and ["yellow", "1", "2", "0"] in parser.rows
    assert "yellow/yellow_004.png" in " ".join(parser.text)


def test_no_warning_box_when_every_class_was_evaluated():
    summary = _summary()
    summary.classes = [ClassCoverage("blue", 9, 3), ClassCoverage("yellow", 1, 2)]
    assert _render(_facts(summary)).warning == []


def test_the_run_summary_shows_per_split_counts_the_moves_and_the_unevaluated_class():
    text = _summary().render()
    assert "classes     train/eval examples: blue 9/3, purple 3/0, yellow 1/2" in text
    assert "yellow/yellow_004.png -> train" in text
    assert "WARNING     class 'purple' has no eval examples (3 training)" in text
    assert "(threshold 0.50, on the whole eval split, not per class): BLESSED" in text


def test_counts_of_examples_ingested_before_they_were_recorded_are_flagged_not_shown_as_zero():
    summary = _summary()
    summary.classes = [ClassCoverage("blue", None, None), ClassCoverage("yellow", None, None)]
    text = summary.render()
    assert "classes     train/eval examples: blue ?/?, yellow ?/?" in text
    assert "WARNING     the train/eval counts of 'blue', 'yellow' were not recorded" in text
    parser = _render(_facts(summary))
    assert ["blue", "not recorded", "not recorded"] in parser.rows
    assert "Touch the data files" in " ".join(parser.warning)
