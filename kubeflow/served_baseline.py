"""ServedModelBaseline: the Evaluator's baseline on open-source Kubeflow Pipelines = the model being served now.

KFP 2.x cannot execute the `resolver` tasks TFX compiles the latest-blessed-model Resolver into (its compiler
answers "resolver executors not implemented"), so the Kubeflow target replaces that Resolver with this ordinary
container component (see kubeflow.kfp_target). It needs no ML Metadata access, which multi-user KFP namespaces
usually do not have, only the serving folder the Pusher writes:

- no version served yet: the output Model artifact stays empty (custom property `baseline` = "none"); the
  Evaluator treats a baseline without a SavedModel as no baseline (components/evaluator/executor.py), as it treats
  the Resolver's empty result;
- otherwise the latest version (what TF Serving serves by default): when the push record (`hubtfx_push.json`)
  names the Trainer's model it was copied from and that model is still there with the same fingerprint, the
  output artifact's URI is that Model artifact (lineage as with the Resolver); else the served files are copied
  into the output artifact's Format-Serving folder. The KFP launcher takes the URI from the executor output
  (mergeRuntimeArtifacts), as local runs and execute-spec do.

The difference from the Resolver: a version someone rolled back to, or pushed by another pipeline into the same
folder, is the baseline, because it is what serves traffic; a blessed model that was not pushed (identical to
the served one) is not, which changes nothing since it equals the served model.
"""
import json
import os
from typing import Any, Dict, List

from absl import logging
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import path_utils

from hubtfx.components.pusher import serving

SERVING_DIR_KEY = "serving_dir"
MODEL_KEY = "model"
# Custom properties of the output Model artifact.
BASELINE_KEY = "baseline"          # "none", "pushed model" or "copy of the served version"
SERVED_VERSION_KEY = "served_version"
SERVED_PATH_KEY = "served_path"
NO_BASELINE = "none"
FROM_PUSHED_MODEL = "pushed model"
FROM_SERVED_COPY = "copy of the served version"


class ServedModelBaselineSpec(types.ComponentSpec):
    PARAMETERS = {SERVING_DIR_KEY: ExecutionParameter(type=str)}
    INPUTS: Dict[str, ChannelParameter] = {}
    OUTPUTS = {MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


def _push_source(version_dir: str) -> str:
    record = os.path.join(version_dir, serving.PUSH_RECORD_FILE)
    if not tf.io.gfile.exists(record):
        return ""
    with tf.io.gfile.GFile(record) as f:
        return json.load(f).get("source", "")


class Executor(base_executor.BaseExecutor):
    """Points the output Model artifact at the served model (see the module docstring)."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        model = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
        base_dir = exec_properties[SERVING_DIR_KEY]
        version_dir = serving.latest_version_dir(base_dir)
        if version_dir is None:
            logging.info("No model is served under %s yet: the Evaluator gets no baseline.", base_dir)
            model.set_string_custom_property(BASELINE_KEY, NO_BASELINE)
            return
        model.set_string_custom_property(SERVED_VERSION_KEY, os.path.basename(version_dir))
        model.set_string_custom_property(SERVED_PATH_KEY, version_dir)
        source = _push_source(version_dir)
        serving_folder = path_utils.serving_model_dir("")
        if (source and os.path.basename(source.rstrip("/")) == serving_folder.strip("/")
                and tf.io.gfile.exists(os.path.join(source, "saved_model.pb"))
                and serving.model_fingerprint(source) == serving.served_fingerprint(version_dir)):
            model.uri = os.path.dirname(source.rstrip("/"))
            model.set_string_custom_property(BASELINE_KEY, FROM_PUSHED_MODEL)
            logging.info("Baseline: served version %s, the pushed model %s.", version_dir, model.uri)
            return
        serving.copy_model(version_dir, path_utils.serving_model_dir(model.uri))
        model.set_string_custom_property(BASELINE_KEY, FROM_SERVED_COPY)
        logging.info("Baseline: a copy of served version %s (its source model %s is gone or differs).",
                     version_dir, source or "is not recorded")


class ServedModelBaseline(base_component.BaseComponent):
    """Outputs the model served under `serving_dir` (a Pusher's filesystem base directory) as a Model."""

    SPEC_CLASS = ServedModelBaselineSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, serving_dir: str):
        super().__init__(spec=ServedModelBaselineSpec(
            serving_dir=serving_dir, model=channel.Channel(type=standard_artifacts.Model)))
