"""AnomalyGate: fails the run on data that must not be trained on, so nothing downstream trains on it.

It stops the run when ExampleValidator found anomalies against the curated schema (ExampleValidator only
records them; TFX runs Transform and the Trainer regardless), or when a class of the label map has no training
examples (components/gate/coverage.py). The pipeline orders Transform after this gate (`add_upstream_node`),
so a failing gate stops the run before any training.
"""
from typing import List

from absl import logging
from tfx import v1 as tfx

from hubtfx.components.gate import anomalies as anomalies_lib
from hubtfx.components.gate import coverage as coverage_lib

SCHEMA_HINT = "schemas/schema.pbtxt"


@tfx.dsl.components.component
def AnomalyGate(  # pylint: disable=invalid-name
        anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
        examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
        training_examples: tfx.dsl.components.InputArtifact[List[tfx.types.standard_artifacts.Examples]] = None,
) -> None:
    """Raises DataAnomaliesError listing every anomaly of every split, or ClassCoverageError naming the classes
    without training examples; logs the classes without eval examples; passes silently otherwise.

    Args:
      anomalies: ExampleValidator's output for `examples`.
      examples: the Examples the Evaluator reads (the newest span).
      training_examples: the Examples the Trainer reads (one per span of the span window); optional because on
        Vertex / Kubeflow a task must not get one artifact under two input names (ML Metadata refuses the second
        INPUT event), so there it is left out when it is `examples` (see kubeflow.kfp_target).
    """
    lines = anomalies_lib.describe(anomalies_lib.read_split_anomalies(anomalies))
    if lines:
        raise anomalies_lib.anomalies_error(lines, anomalies.span, SCHEMA_HINT)
    coverage = coverage_lib.check([coverage_lib.read_ingestion(e.uri) for e in training_examples or [examples]],
                                  coverage_lib.read_ingestion(examples.uri))
    for gap in coverage_lib.unevaluated(coverage):
        logging.warning("%s", coverage_lib.unevaluated_warning(gap))
