"""Reading ExampleValidator's anomalies, and the error that stops a run on them."""
import os
from typing import Dict, List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils

# ExampleValidator's file name for the anomalies of one split (tfx.components.example_validator.executor).
ANOMALIES_FILE = "SchemaDiff.pb"


class DataAnomaliesError(ValueError):
    """The new data does not match the curated schema; the message lists every anomaly and what to do."""


def read_split_anomalies(artifact) -> Dict[str, anomalies_pb2.Anomalies]:
    """split name -> the Anomalies proto ExampleValidator wrote for it."""
    result = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        anomalies = anomalies_pb2.Anomalies()
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
        with tf.io.gfile.GFile(path, "rb") as f:
            anomalies.ParseFromString(f.read())
        result[split] = anomalies
    return result


def describe(split_anomalies: Dict[str, anomalies_pb2.Anomalies]) -> List[str]:
    """One line per anomaly: '<split> / <feature>: <description>' (dataset-level ones name no feature)."""
    lines = []
    for split, anomalies in sorted(split_anomalies.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(f"{split} / {feature}: {info.description or info.short_description}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"{split} / (dataset): {info.description or info.short_description}")
    return lines


def anomalies_error(lines: List[str], span: int, schema_hint: str) -> DataAnomaliesError:
    listing = "\n".join(f"  {line}" for line in lines)
    return DataAnomaliesError(
        f"ExampleValidator found {len(lines)} anomal{'y' if len(lines) == 1 else 'ies'} in the data of span {span} "
        f"against the curated schema; stopped before training, serving is unchanged:\n{listing}\n"
        f"Fix the data and publish it as a new span, or, if the data is right and the schema is too strict, "
        f"update {schema_hint}.")
