"""The interface of an exported hubtfx model, in one place: its signature names and its facts file.

Signatures (all return `probabilities` [b, classes] float32, `class_id` [b] int64 and `class_name` [b] string):

- `serving_default` (DEFAULT_SIGNATURE): encoded image bytes, input `image_bytes` [b] string; also returns
  `error` [b] string ("" when scored). TF Serving runs it for a request without `signature_name`, and it is the
  only signature a Vertex AI endpoint can call: a Vertex predict body has just `instances` and `parameters`
  (https://cloud.google.com/vertex-ai/docs/predictions/get-online-predictions), so the prebuilt TensorFlow
  container always uses the default signature.
- `serving_bytes` (BYTES_SIGNATURE): the same function under the name earlier hubtfx versions documented, so
  requests that name it keep working.
- `serving_examples` (EXAMPLES_SIGNATURE): serialized tf.Examples, input `examples` [b] string; TFMA scores the
  eval split through it (`hubtfx.pipeline.pipeline.eval_config` names it in its ModelSpec).

Models exported before this layout have `serving_default` on tf.Examples and `serving_bytes` on image bytes;
`image_signature` finds the image-bytes one in either.

The facts file, `assets.extra/hubtfx_model.json` (TF Serving's folder for files it does not load), records what
makes two models comparable: class names in class-id order, the input size and the backbone module.
"""
import dataclasses
import json
import os
from typing import Optional, Tuple

import tensorflow as tf

from hubtfx.components.trainer import params

DEFAULT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
EXAMPLES_SIGNATURE = "serving_examples"
IMAGE_INPUT = "image_bytes"
EXAMPLES_INPUT = "examples"
# The signatures' outputs: float32 [n, classes] softmax, int64 [n] argmax, string [n] its class name, and (image
# bytes signature only) string [n] why an input was not scored ("" when it was; class_id -1 and zero
# probabilities then).
PROBABILITIES = "probabilities"
CLASS_ID = "class_id"
CLASS_NAME = "class_name"
ERROR = "error"

# TF Serving's folder for files beside a SavedModel that it does not load.
ASSETS_EXTRA_DIR = "assets.extra"
FACTS_FILE = os.path.join(ASSETS_EXTRA_DIR, "hubtfx_model.json")
# The Trainer's custom_config key for the backbone's identity, {"handle": ..., "sha256": ...}, as the pipeline
# recorded it on the module's Importer artifact; the export copies it into the facts.
MODULE_CONFIG_KEY = params.MODULE_KEY


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What a model was trained for. Empty strings / None mean "not recorded" (an older export)."""
    class_names: Tuple[str, ...]  # index = class id
    image_size: Optional[Tuple[int, int]] = None  # (height, width) in pixels, what the backbone is fed
    module_handle: str = ""
    module_sha256: str = ""
    seq_length: Optional[int] = None  # texts: wordpieces per example, what the encoder is fed at most
    modality: str = "image"  # the registry name of the inputs' modality (models without it take images)

    def to_json(self) -> dict:
        return {"class_names": list(self.class_names), "modality": self.modality,
                "image_size": list(self.image_size) if self.image_size else None,
                "seq_length": self.seq_length,
                "module": {"handle": self.module_handle, "sha256": self.module_sha256}}

    @classmethod
    def from_json(cls, payload: dict) -> "ModelFacts":
        module = payload.get("module") or {}
        size = payload.get("image_size")
        return cls(class_names=tuple(payload.get("class_names", ())),
                   image_size=tuple(int(s) for s in size) if size else None,
                   module_handle=module.get("handle", ""), module_sha256=module.get("sha256", ""),
                   seq_length=payload.get("seq_length"), modality=payload.get("modality") or "image")


def write_facts(export_dir: str, facts: ModelFacts) -> None:
    tf.io.gfile.makedirs(os.path.join(export_dir, ASSETS_EXTRA_DIR))
    with tf.io.gfile.GFile(os.path.join(export_dir, FACTS_FILE), "w") as f:
        json.dump(facts.to_json(), f, indent=2)


def read_facts(export_dir: str) -> Optional[ModelFacts]:
    """The model's facts, or None when it was exported without them (before hubtfx wrote this file)."""
    path = os.path.join(export_dir, FACTS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return ModelFacts.from_json(json.load(f))


def signature_inputs(export_dir: str) -> dict:
    """{signature name: sorted input names} from the SavedModel's proto, without loading the model.

    Raises FileNotFoundError if `export_dir` holds no saved_model.pb.
    """
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
    path = os.path.join(export_dir, "saved_model.pb")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"No saved_model.pb in {export_dir}.")
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    signatures = saved_model.meta_graphs[0].signature_def
    return {name: sorted(signature.inputs) for name, signature in signatures.items()}


def image_signature(loaded) -> object:
    """The signature of a loaded model (tf.saved_model.load) that takes encoded image bytes as `image_bytes`."""
    default = loaded.signatures.get(DEFAULT_SIGNATURE)
    if default is not None and list(default.structured_input_signature[1]) == [IMAGE_INPUT]:
        return default
    if BYTES_SIGNATURE in loaded.signatures:
        return loaded.signatures[BYTES_SIGNATURE]
    raise ValueError(f"The model has no signature that takes `{IMAGE_INPUT}` (signatures: "
                     f"{sorted(loaded.signatures)}); was it exported by hubtfx?")
