"""Per-class coverage: how many training and eval examples each class of the label map has.

Read from the ingestion reports ImageFolderExampleGen writes beside its splits (components/example_gen/
executor.py). Decisions (README.md, "Your own data"):

- A class with no training examples stops the run before training (ClassCoverageError, exit 2): the model
  would have an output it can never learn, yet the class would count in the label map and in accuracy.
  ExampleGen's split (components/example_gen/split.py) never starves a class of training examples, so this
  happens when a class of the label map has no decodable image in the spans trained on (e.g. a span window
  whose spans all lack it).
- A class with no eval examples (a class with a single image, or one missing from the newest span) is
  reported in the run summary and the HTML report but does not block blessing: the thresholds gate the
  overall eval accuracy only, and blocking would keep scheduled retraining from ever pushing until a span
  with that class arrives.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import List, Optional, Sequence

import tensorflow as tf

from hubtfx.components.common import artifact_files
from hubtfx.components.example_gen import split as split_lib
from hubtfx.components.gate import anomalies as anomalies_lib


class ClassCoverageError(anomalies_lib.DataAnomaliesError):
    """A class of the label map has no training examples; the message names it and says what to do."""


@dataclasses.dataclass(frozen=True)
class ClassCoverage:
    """One class's examples. None: not recorded (Examples ingested before per-class split counts existed)."""

    name: str
    train: Optional[int]  # training examples over every span trained on
    eval: Optional[int]  # eval examples of the evaluated (newest) span


def read_ingestion(examples_uri: str) -> dict:
    """The ingestion report of an Examples artifact (empty when missing), plus its label map under 'classes'."""
    report = {}
    for name in (artifact_files.INGESTION_REPORT_FILE, artifact_files.LABEL_MAP_FILE):
        path = os.path.join(examples_uri, name)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                report.update(json.load(f))
    return report


def _split_count(report: dict, class_name: str, split: str) -> Optional[int]:
    """A class's examples in one split of one span: 0 if the span has no such class folder."""
    counts = report.get("per_class", {}).get(class_name)
    if counts is None:
        return 0
    return counts.get(split)


def class_coverage(training: Sequence[dict], evaluated: dict) -> List[ClassCoverage]:
    """Coverage of every class of the label map, in class-id order.

    Args:
      training: the ingestion reports (read_ingestion) of the Examples the Trainer reads, one per span.
      evaluated: the ingestion report of the Examples the Evaluator reads (the newest span).
    """
    # The label map only appends classes, so the longest one covers every id (as the Trainer's run.py reads it).
    class_names = max((report.get(artifact_files.LABEL_MAP_CLASSES_KEY, []) for report in [*training, evaluated]),
                      key=len)
    result = []
    for name in class_names:
        per_span = [_split_count(report, name, split_lib.TRAIN) for report in training]
        result.append(ClassCoverage(
            name=name, train=None if None in per_span else sum(per_span),
            eval=_split_count(evaluated, name, split_lib.EVAL)))
    return result


def untrained(coverage: Sequence[ClassCoverage]) -> List[ClassCoverage]:
    return [c for c in coverage if c.train == 0]


def unevaluated(coverage: Sequence[ClassCoverage]) -> List[ClassCoverage]:
    return [c for c in coverage if c.eval == 0]


def _spans(reports: Sequence[dict]) -> str:
    # Without use_spans TFX records span 0 (as the report's data section does, show no span then).
    spans = sorted(report["span"] for report in reports if report.get("span"))
    return f"span{'s' if len(spans) > 1 else ''} {', '.join(map(str, spans))}" if spans else "the data"


def unevaluated_warning(coverage: ClassCoverage) -> str:
    """One line for the run summary and the report about a class with no eval examples."""
    return (f"class {coverage.name!r} has no eval examples ({coverage.train} training): it was never evaluated, "
            "so the blessing says nothing about it. A class with 2 or more examples in the newest span gets eval "
            "examples.")


def warnings(coverage: Sequence[ClassCoverage]) -> List[str]:
    """The run summary's and the report's lines about classes that were never evaluated, or whose split counts
    are unknown (Examples ingested before hubtfx recorded them, reused from TFX's cache)."""
    lines = [unevaluated_warning(c) for c in unevaluated(coverage)]
    unknown = [c.name for c in coverage if c.train is None or c.eval is None]
    if unknown:
        lines.append(f"the train/eval counts of {', '.join(map(repr, unknown))} were not recorded: their examples "
                     "were ingested by an older hubtfx and reused from the cache, so a class may lie wholly in one "
                     "split. Touch the data files (or use a new --output-dir) to ingest them again.")
    return lines


def coverage_error(missing: Sequence[ClassCoverage], training: Sequence[dict]) -> ClassCoverageError:
    names = ", ".join(repr(c.name) for c in missing)
    return ClassCoverageError(
        f"class{'es' if len(missing) > 1 else ''} {names} of the label map ha{'ve' if len(missing) > 1 else 's'} "
        f"no training examples in {_spans(training)} (what the Trainer reads): the model could never predict "
        f"{'them' if len(missing) > 1 else 'it'}. Stopped before training, serving is unchanged. Add usable "
        "examples of each such class (a class with 2 or more gets both training and eval examples), "
        "or widen --span-window to include a span that has them; to retire a class, delete "
        f"{artifact_files.LABEL_MAP_FILE} in the output folder (class ids are then reassigned in sorted order of the "
        "folders found).")


def check(training: Sequence[dict], evaluated: dict) -> List[ClassCoverage]:
    """The coverage; raises ClassCoverageError if a class has no training examples."""
    coverage = class_coverage(training, evaluated)
    missing = untrained(coverage)
    if missing:
        raise coverage_error(missing, training)
    return coverage
