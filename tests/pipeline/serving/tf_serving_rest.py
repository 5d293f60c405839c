"""TF Serving's REST predict conversion (JSON body -> input tensors of one signature), for tests.

No tensorflow_model_server binary can be installed here (no Debian package, nothing on PyPI), so this follows
TF Serving's own implementation, `FillPredictRequestFromJson` in tensorflow_serving/util/json_tensor.cc
(https://github.com/tensorflow/serving/blob/master/tensorflow_serving/util/json_tensor.cc), as documented in
https://www.tensorflow.org/tfx/serving/api_rest#predict_api, for what hubtfx's signatures take (string inputs):

- `signature_name` is optional; without it the server uses `serving_default`. A Vertex AI predict body cannot
  carry it (https://cloud.google.com/vertex-ai/docs/predictions/get-online-predictions#formatting-instances-as-json):
  the prebuilt TensorFlow container forwards `instances` to TF Serving, so Vertex always gets the default.
- exactly one of `instances` (row format, a non-empty list) or `inputs` (columnar format).
- row format: if the first instance is an object other than `{"b64": ...}`, every instance must be an object
  whose keys equal the signature's input names; otherwise (one named input only) each instance is the value.
- columnar format: a plain value/list or a b64 object for a single named input, else an object of input names.
- a value for a DT_STRING input is a JSON string (its UTF-8 bytes, used as is) or `{"b64": "<base64>"}` (only
  that one key), which is base64-decoded to bytes; anything else is an error for the whole request.

Errors are raised as RequestError: TF Serving answers those with HTTP 400 for the whole request.
"""
import base64
import binascii
from typing import Dict, List

import tensorflow as tf

DEFAULT_SIGNATURE = "serving_default"


class RequestError(ValueError):
    """The request as a whole is rejected (HTTP 400 from TF Serving)."""


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _string_value(value, where: str) -> bytes:
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            raise RequestError(f"{where}: Unable to base64 decode") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RequestError(f"{where}: JSON Value: {value!r} is not of expected type: string")


def _column(values, where: str) -> List[bytes]:
    if not isinstance(values, list):
        raise RequestError(f"{where}: expected a list of one value per image")
    return [_string_value(v, f"{where} item {i}") for i, v in enumerate(values)]


def request_tensors(body: dict, input_names: List[str]) -> Dict[str, List[bytes]]:
    """The batch of bytes per input name that TF Serving would feed a signature with `input_names` (all DT_STRING,
    shape [None])."""
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("expecting exactly one of 'inputs' or 'instances' keys")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError("'instances' must be a non-empty list")
        if isinstance(instances[0], dict) and not _is_b64(instances[0]):
            columns = {name: [] for name in input_names}
            for i, instance in enumerate(instances):
                if not isinstance(instance, dict) or _is_b64(instance):
                    raise RequestError(f"Expecting object but got list at item {i} of input list")
                if set(instance) != set(input_names):
                    raise RequestError(f"Failed to process element: {i} of 'instances' list. JSON object keys "
                                       f"must be equal to: {','.join(sorted(input_names))}")
                for name, value in instance.items():
                    columns[name].append(_string_value(value, f"element {i} key {name}"))
            return columns
        if len(input_names) > 1:
            raise RequestError("instances is a plain list, but expecting list of objects as multiple input "
                               "tensors required as per tensorinfo_map")
        values = []
        for i, instance in enumerate(instances):
            if isinstance(instance, dict) and not _is_b64(instance):
                raise RequestError(f"Expecting value/list but got object at item {i} of input list")
            values.append(_string_value(instance, f"element {i}"))
        return {input_names[0]: values}
    inputs = body["inputs"]
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(input_names) > 1:
            raise RequestError("inputs is a plain value/list, but expecting an object as multiple input tensors "
                               "required as per tensorinfo_map")
        return {input_names[0]: _column(inputs, "inputs")}
    missing = [name for name in input_names if name not in inputs]
    if missing:
        raise RequestError(f"Missing named input: {missing[0]} in 'inputs' object.")
    return {name: _column(inputs[name], f"inputs {name}") for name in input_names}


def predict(loaded_model, body: dict) -> Dict[str, object]:
    """What TF Serving computes for `body` with a model loaded by tf.saved_model.load: {output name: numpy array}.

    Raises RequestError for a body TF Serving would reject as a whole, and KeyError for an unknown signature.
    """
    signature = loaded_model.signatures[body.get("signature_name") or DEFAULT_SIGNATURE]
    input_names = sorted(signature.structured_input_signature[1])
    tensors = request_tensors(body, input_names)
    outputs = signature(**{name: tf.constant(values, tf.string) for name, values in tensors.items()})
    return {name: value.numpy() for name, value in outputs.items()}
