"""Executor of AtomicPusher: TFX's Pusher, but atomic and without re-pushing the model being served."""
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from hubtfx.components.pusher import serving

SKIP_REASON_KEY = "push_skipped_reason"
FINGERPRINT_KEY = "model_fingerprint"
SERVED_VERSION_KEY = "served_version"


def filesystem_base_dir(exec_properties: Dict[str, Any]) -> str:
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
    if destination.WhichOneof("destination") != "filesystem":
        raise ValueError("AtomicPusher pushes to a file system folder: set push_destination.filesystem.")
    return destination.filesystem.base_directory


class Executor(tfx_pusher_executor.Executor):
    """Blessing check and output properties as in TFX (pushed, pushed_destination, pushed_version)."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        result = serving.push_model(model_path, filesystem_base_dir(exec_properties))
        model_push.set_string_custom_property(FINGERPRINT_KEY, result.fingerprint)
        if not result.pushed:
            logging.info("Not pushing %s: %s.", model_path, result.reason)
            self._MarkNotPushed(model_push)
            model_push.set_string_custom_property(SKIP_REASON_KEY, result.reason)
            model_push.set_string_custom_property(SERVED_VERSION_KEY, result.version)
            return
        # Archived in the artifact as TFX's Pusher does, so lineage keeps the exact pushed files.
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=result.path, pushed_version=result.version)
        logging.info("Model pushed to %s.", result.path)
