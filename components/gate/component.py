"""AnomalyGate: fails the run when ExampleValidator found anomalies, so nothing downstream trains on bad data.

ExampleValidator only records anomalies; TFX runs Transform and the Trainer regardless. The pipeline orders
Transform after this gate (`add_upstream_node`), so a failing gate stops the run before any training.
"""
from tfx import v1 as tfx

from components.gate import anomalies as anomalies_lib

SCHEMA_HINT = "schemas/schema.pbtxt"


@tfx.dsl.components.component
def AnomalyGate(  # pylint: disable=invalid-name
        anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies]) -> None:
    """Raises DataAnomaliesError listing every anomaly of every split; passes silently otherwise."""
    lines = anomalies_lib.describe(anomalies_lib.read_split_anomalies(anomalies))
    if lines:
        raise anomalies_lib.anomalies_error(lines, anomalies.span, SCHEMA_HINT)
