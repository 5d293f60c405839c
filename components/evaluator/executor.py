"""TFX's Evaluator executor, which first checks that the baseline can be compared with the candidate.

An incomparable baseline (see `comparability`) is dropped before TFMA runs: TFX then evaluates the candidate
alone and ignores the change thresholds (`rubber_stamp`), so only the absolute thresholds gate the blessing. The
reasons go to the blessing's custom properties comparability.BASELINE_SKIPPED_REASON and SKIPPED_BASELINE_MODEL.
"""
import logging
import os
from typing import Any, Dict, List

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils, proto_utils

from hubtfx.components.evaluator import comparability


def _serving_dir(model: types.Artifact) -> str:
    return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


def _holds_model(model: types.Artifact) -> bool:
    return tf.io.gfile.exists(os.path.join(_serving_dir(model), "saved_model.pb"))


def eval_signature(exec_properties: Dict[str, Any]) -> str:
    """The signature the EvalConfig has TFMA call (TFMA's default, serving_default, when it names none)."""
    eval_config = tfma.EvalConfig()
    if exec_properties.get(standard_component_specs.EVAL_CONFIG_KEY):
        proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_CONFIG_KEY], eval_config)
    names = {spec.signature_name for spec in eval_config.model_specs if not spec.is_baseline}
    return next(iter(names - {""}), "serving_default")


class Executor(tfx_evaluator_executor.Executor):
    """Evaluates the candidate against the baseline only when the two are comparable."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        baselines = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
        if len(baselines) == 1 and not _holds_model(baselines[0]):
            # kubeflow.served_baseline's answer before anything is served: no baseline, as a Resolver's empty one.
            logging.info("The baseline %s holds no model: evaluating without a baseline.", baselines[0].uri)
            baselines = []
            input_dict = {**input_dict, standard_component_specs.BASELINE_MODEL_KEY: []}
        reason = None
        if len(baselines) == 1:
            candidate = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
            reason = comparability.check(_serving_dir(candidate), _serving_dir(baselines[0]),
                                         eval_signature(exec_properties))
        if reason:
            logging.warning("Not comparing with the latest blessed model %s: %s; %s.", baselines[0].uri, reason,
                            comparability.CONSEQUENCE)
            input_dict = {**input_dict, standard_component_specs.BASELINE_MODEL_KEY: []}
        super().Do(input_dict, output_dict, exec_properties)
        if reason:
            blessing = artifact_utils.get_single_instance(output_dict[standard_component_specs.BLESSING_KEY])
            blessing.set_string_custom_property(comparability.BASELINE_SKIPPED_REASON, reason)
            blessing.set_string_custom_property(comparability.SKIPPED_BASELINE_MODEL, baselines[0].uri)
