"""The Evaluator's TFMA output as plain Python values: overall metrics, baseline diffs, the confusion matrix,
per-class precision and recall, and the threshold checks behind the blessing."""
import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np
from google.protobuf import text_format
import tensorflow_model_analysis as tfma

ACCURACY = "sparse_categorical_accuracy"
CONFUSION_MATRIX_PLOT = "multi_class_confusion_matrix_plot"
# The candidate's model name: empty without a baseline, "candidate" when the Evaluator compared two models.
_CANDIDATE_NAMES = ("", tfma.constants.CANDIDATE_KEY)


@dataclasses.dataclass
class ClassMetrics:
    name: str
    support: int  # eval examples of this class
    predicted: int  # eval examples predicted as this class
    precision: Optional[float]  # None when nothing was predicted as this class
    recall: Optional[float]  # None when the eval split has no example of this class


@dataclasses.dataclass
class EvalResults:
    metrics: Dict[str, float]  # the evaluated model's, overall slice
    baseline_metrics: Dict[str, float]  # empty when there was no blessed model to compare with
    diffs: Dict[str, float]  # candidate minus baseline
    confusion: np.ndarray  # [actual class id, predicted class id] -> eval examples
    validation_ok: bool
    failures: List[str]  # one sentence per failed threshold

    @property
    def has_baseline(self) -> bool:
        return bool(self.baseline_metrics)


def _is_overall(slice_key) -> bool:
    return not slice_key.single_slice_keys


def overall_metrics(evaluation_uri: str):
    """(candidate metrics, baseline metrics, diffs) of the overall slice, by metric name."""
    candidate, baseline, diffs = {}, {}, {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if not _is_overall(metrics.slice_key):
            continue
        for key_and_value in metrics.metric_keys_and_values:
            key = key_and_value.key
            if not key_and_value.value.HasField("double_value"):
                continue
            value = float(key_and_value.value.double_value.value)
            if key.is_diff:
                diffs[key.name] = value
            elif key.model_name == tfma.constants.BASELINE_KEY:
                baseline[key.name] = value
            elif key.model_name in _CANDIDATE_NAMES:
                candidate[key.name] = value
    return candidate, baseline, diffs


def confusion_matrix(evaluation_uri: str, num_classes: int) -> np.ndarray:
    """The evaluated model's overall confusion matrix, rows actual and columns predicted class ids."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for plots in tfma.load_plots(evaluation_uri):
        if not _is_overall(plots.slice_key):
            continue
        for key_and_value in plots.plot_keys_and_values:
            if key_and_value.key.name != CONFUSION_MATRIX_PLOT or key_and_value.key.model_name not in _CANDIDATE_NAMES:
                continue
            # One threshold (0.0) is configured, so there is exactly one matrix.
            for entry in key_and_value.value.multi_class_confusion_matrix_at_thresholds.matrices[0].entries:
                # Below-threshold examples get NO_PREDICTED_CLASS_ID (-1), which would index the last column.
                if 0 <= entry.predicted_class_id < num_classes:
                    matrix[entry.actual_class_id, entry.predicted_class_id] += round(entry.num_weighted_examples)
            return matrix
    raise ValueError(f"No {CONFUSION_MATRIX_PLOT} in the evaluation at {evaluation_uri}: was it produced with "
                     "hubtfx.pipeline.pipeline.eval_config (which configures it)?")


def _ratio(numerator: int, denominator: int) -> Optional[float]:
    return numerator / denominator if denominator else None


def per_class_metrics(matrix: np.ndarray, class_names: Sequence[str]) -> List[ClassMetrics]:
    """Precision (of the predictions of a class) and recall (of its examples), one-vs-rest from the matrix."""
    return [ClassMetrics(name=name, support=int(matrix[i].sum()), predicted=int(matrix[:, i].sum()),
                         precision=_ratio(matrix[i, i], matrix[:, i].sum()),
                         recall=_ratio(matrix[i, i], matrix[i].sum()))
            for i, name in enumerate(class_names)]


def _slice_name(slice_key) -> str:
    return tfma.slicer.stringify_slice_key(tfma.slicer.deserialize_slice_key(slice_key))


def describe_failure(failure) -> str:
    """A sentence for a failed threshold (TFMA's own message is usually empty)."""
    name = failure.metric_key.name
    value = failure.metric_value.double_value.value
    threshold = failure.metric_threshold
    if threshold.HasField("change_threshold"):
        change = threshold.change_threshold
        limit = change.absolute.value
        relation = "at least" if change.direction == tfma.MetricDirection.HIGHER_IS_BETTER else "at most"
        text = f"{name} changed by {value:+.4f} against the baseline; the change must be {relation} {limit:+.4f}"
    else:
        bounds = threshold.value_threshold
        parts = []
        if bounds.HasField("lower_bound"):
            parts.append(f"at least {bounds.lower_bound.value:.4f}")
        if bounds.HasField("upper_bound"):
            parts.append(f"at most {bounds.upper_bound.value:.4f}")
        text = f"{name} is {value:.4f}; it must be {' and '.join(parts)}"
    message = failure.message.strip()
    return f"{text}. {message}" if message else f"{text}."


def threshold_failures(validation_result) -> List[str]:
    failures = []
    for per_slice in validation_result.metric_validations_per_slice:
        where = "" if _is_overall(per_slice.slice_key) else f"In slice {_slice_name(per_slice.slice_key)}: "
        failures += [where + describe_failure(f) for f in per_slice.failures]
    failures += [f"No evaluation data for slice {text_format.MessageToString(spec, as_one_line=True)}."
                 for spec in validation_result.missing_slices]
    return failures


def load(evaluation_uri: str, class_names: Sequence[str]) -> EvalResults:
    candidate, baseline, diffs = overall_metrics(evaluation_uri)
    validation = tfma.load_validation_result(evaluation_uri)
    return EvalResults(metrics=candidate, baseline_metrics=baseline, diffs=diffs,
                       confusion=confusion_matrix(evaluation_uri, len(class_names)),
                       validation_ok=validation.validation_ok, failures=threshold_failures(validation))
