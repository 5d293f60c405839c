"""The input/output contract of a module (image: size and value range; text: sequence length and the matching
preprocessing model; output kind), stored beside saved_model.pb.

tfhub.dev documents its image-module conventions on web pages, not in the SavedModel, so hubtfx writes the
contract into ``hubtfx_contract.json`` in the module root. For third-party modules without that file the
contract is inferred from the serving signature using the TF Hub image convention (float32 RGB in [0, 1]).

Reading the JSON does not import TensorFlow; only inference from a SavedModel does.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Dict, Optional, Tuple

CONTRACT_FILENAME = "hubtfx_contract.json"
KINDS = ("feature_vector", "classification", "preprocessor")
TEXT_MODALITY = "text"
# The TF Hub convention for image modules (https://www.tensorflow.org/hub/common_signatures/images).
HUB_IMAGE_VALUE_RANGE = (0.0, 1.0)
# The key of the feature vector in the dict a module returns with return_levels=True (TF Hub's name for the
# main output of a multi-output module).
DEFAULT_LEVEL = "default"
RESIZE_METHODS = ("bilinear", "bicubic", "area", "nearest")
# Contracts written before modalities existed describe image modules.
DEFAULT_MODALITY = "image"


class ContractError(ValueError):
    """The module's contract is missing, malformed or cannot be inferred."""


@dataclasses.dataclass(frozen=True)
class ModuleContract:
    """What a module expects as input and produces as output.

    Attributes:
      image_size: (height, width) an image module was built for; None for other modalities.
      channels: number of input channels (3 for RGB).
      value_range: (low, high) of the float32 pixel values the module expects.
      output_dim: size of the output vector (features or logits); None if unknown.
      kind: 'feature_vector' (pooled features), 'classification' (logits) or 'preprocessor' (a TF Hub
        preprocessing model: text -> the encoder's inputs).
      name: a human-readable module name.
      resize_method: the tf.image.resize method preprocessing should use to reach image_size.
      source: where the weights come from (package, version, upstream release).
      license_note: the licence of the weights and how they may be redistributed.
      feature_levels: names of extra outputs, globally average-pooled activations of intermediate blocks
        ([batch, channels] float32 each), that `__call__(images, training, return_levels=True)` returns in a dict
        next to `default` (the feature vector). Empty: the module offers only its feature vector. Lower blocks
        transfer better to domains far from the source task (Yosinski et al., "How transferable are features
        in deep neural networks?", NeurIPS 2014).
      modality: the name of the hubtfx.components.modality implementation that ingests, preprocesses and renders
        this module's inputs (registry.modality_for); the image fields above apply to "image".
      seq_length: for text, the number of wordpieces per example (int32 [batch, seq_length] inputs); None else.
      preprocessor: for a text encoder, the TF Hub preprocessing model it was trained with: a path, absolute or
        relative to the encoder's parent folder (a sibling module); "" else.
    """

    image_size: Optional[Tuple[int, int]] = None
    channels: int = 3
    value_range: Tuple[float, float] = HUB_IMAGE_VALUE_RANGE
    output_dim: Optional[int] = None
    kind: str = "feature_vector"
    name: str = ""
    resize_method: str = "bilinear"
    source: str = ""
    license_note: str = ""
    feature_levels: Tuple[str, ...] = ()
    modality: str = DEFAULT_MODALITY
    seq_length: Optional[int] = None
    preprocessor: str = ""

    def __post_init__(self):
        # Normalise JSON lists to tuples so contracts compare equal after a round trip.
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        object.__setattr__(self, "feature_levels", tuple(str(v) for v in self.feature_levels))
        if self.modality == DEFAULT_MODALITY and self.image_size is None:
            raise ContractError("An image module's contract needs image_size (height, width).")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) <= 0):
            raise ContractError(f"image_size must be (height, width) with positive values, got {self.image_size}.")
        if self.modality == TEXT_MODALITY and (not isinstance(self.seq_length, int) or self.seq_length < 2):
            raise ContractError(f"A text module's contract needs seq_length, an integer >= 2, got {self.seq_length!r}.")
        if not isinstance(self.preprocessor, str):
            raise ContractError(f"preprocessor must be a module path (a string), got {self.preprocessor!r}.")
        if len(self.value_range) != 2 or self.value_range[0] >= self.value_range[1]:
            raise ContractError(f"value_range must be (low, high) with low < high, got {self.value_range}.")
        if self.resize_method not in RESIZE_METHODS:
            raise ContractError(f"resize_method must be one of {RESIZE_METHODS}, got {self.resize_method!r}.")
        if DEFAULT_LEVEL in self.feature_levels:
            raise ContractError(f"feature_levels name extra outputs; {DEFAULT_LEVEL!r} is always there.")
        if self.kind not in KINDS:
            raise ContractError(f"kind must be one of {KINDS}, got {self.kind!r}.")
        if not isinstance(self.channels, int) or self.channels < 1:
            raise ContractError(f"channels must be a positive integer, got {self.channels!r}.")
        if self.output_dim is not None and (not isinstance(self.output_dim, int) or self.output_dim < 1):
            raise ContractError(f"output_dim must be a positive integer or null, got {self.output_dim!r}.")
        # Only the type here: which names exist is the modality registry's to say (it refuses unknown ones).
        if not isinstance(self.modality, str) or not self.modality:
            raise ContractError(f"modality must be a non-empty string, got {self.modality!r}.")

    def to_json_dict(self) -> Dict[str, Any]:
        """Returns the contract as a JSON-serialisable dict."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        # An image module's contract file keeps the bytes it had before modalities existed, and so does the
        # module's sha256 over its files, which lineage and the Evaluator's baseline comparison rely on.
        if data["modality"] == DEFAULT_MODALITY:
            del data["modality"]
        for key, default in (("seq_length", None), ("preprocessor", ""), ("image_size", None)):
            if data[key] == default:
                del data[key]
        if self.modality != DEFAULT_MODALITY:  # the pixel fields mean nothing there
            for key in ("channels", "value_range", "resize_method"):
                del data[key]
        return data

    @classmethod
    def from_json_dict(cls, data: Dict[str, Any]) -> "ModuleContract":
        """Builds a contract from a dict, refusing unknown keys so typos are not silently ignored."""
        if not isinstance(data, dict):
            raise ContractError(f"A contract is a JSON object of keys to values, not {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ContractError(f"Unknown contract keys {unknown}; known keys are {sorted(known)}.")
        try:
            return cls(**data)
        except (TypeError, ValueError) as e:  # e.g. image_size "large" or 224: int() / iteration fails.
            if isinstance(e, ContractError):
                raise
            raise ContractError(f"Invalid contract values {data}: {e}") from None


def contract_path(module_dir: str) -> str:
    """Path of the contract JSON inside a module directory."""
    return os.path.join(module_dir, CONTRACT_FILENAME)


def write_contract(module_dir: str, contract: ModuleContract) -> str:
    """Writes the contract JSON (sorted keys, so identical contracts give identical bytes); returns its path."""
    path = contract_path(module_dir)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(contract.to_json_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def read_contract(module_dir: str) -> ModuleContract:
    """Reads the module's contract from its JSON, or infers it from the SavedModel's serving signature.

    Raises:
      ContractError: the JSON is unreadable or malformed (not UTF-8, not JSON, not an object, unknown keys, values
        of the wrong type or range), or there is no JSON and the signature has no fixed image size.
    """
    path = contract_path(module_dir)
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                return ModuleContract.from_json_dict(json.load(f))
        except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors.
            raise ContractError(f"Malformed module contract {path}: {e}") from None
    logging.info("No %s in %s; inferring the contract from the SavedModel signature.", CONTRACT_FILENAME, module_dir)
    return infer_contract(module_dir)


def infer_contract(module_dir: str) -> ModuleContract:
    """Infers the contract from the image input/output shapes of the SavedModel's serving or __call__ function.

    The kind cannot be told from shapes; it defaults to 'feature_vector', the usual kind for transfer learning.
    """
    input_shape, output_shape = _image_function_shapes(module_dir)
    if len(input_shape) != 4 or input_shape[1] is None or input_shape[2] is None:
        raise ContractError(
            f"The module at {module_dir} has no {CONTRACT_FILENAME} and its input shape {input_shape} does not "
            f"fix the image size; pass an explicit image size (height, width) for this module in the config."
        )
    output_dim = output_shape[-1] if output_shape else None
    return ModuleContract(
        image_size=(input_shape[1], input_shape[2]),
        channels=input_shape[3] or 3,
        output_dim=output_dim,
        name=os.path.basename(os.path.normpath(module_dir)),
    )


def read_saved_model_proto(module_dir: str):
    """Parses saved_model.pb without loading variables or executing anything; FileNotFoundError if absent."""
    from tensorflow.core.protobuf import saved_model_pb2  # Imported lazily: pure JSON reading must not need TF.

    path = os.path.join(module_dir, "saved_model.pb")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{module_dir} is not a SavedModel: {path} does not exist.")
    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def _load_saved_model_proto(module_dir: str):
    try:
        return read_saved_model_proto(module_dir)
    except FileNotFoundError:
        raise ContractError(
            f"{module_dir} is not a SavedModel (no saved_model.pb) and has no {CONTRACT_FILENAME}.") from None


def _dims(shape_proto) -> Optional[Tuple[Optional[int], ...]]:
    """TensorShapeProto -> tuple with None for unknown dims; None if the rank is unknown."""
    if shape_proto.unknown_rank:
        return None
    return tuple(d.size if d.size >= 0 else None for d in shape_proto.dim)


def _image_function_shapes(module_dir: str):
    """(input shape, output shape) of the module's image function; serving_default first, then __call__."""
    meta_graph = _load_saved_model_proto(module_dir).meta_graphs[0]
    signature = meta_graph.signature_def.get("serving_default")
    if signature is not None and len(signature.inputs) == 1:
        (tensor_info,) = signature.inputs.values()
        outputs = [_dims(t.tensor_shape) for t in signature.outputs.values()]
        output_shape = outputs[0] if len(outputs) == 1 and outputs[0] else ()
        return _dims(tensor_info.tensor_shape) or (), output_shape
    return _call_input_shape(meta_graph), ()


def _call_input_shape(meta_graph) -> Tuple[Optional[int], ...]:
    """Shape of the first TensorSpec argument of the root object's __call__ concrete functions."""
    graph = meta_graph.object_graph_def
    for child in graph.nodes[0].children:
        if child.local_name != "__call__":
            continue
        for fn_name in graph.nodes[child.node_id].function.concrete_functions:
            args = graph.concrete_functions[fn_name].canonicalized_input_signature.tuple_value.values[0]
            for value in args.tuple_value.values:
                if value.HasField("tensor_spec_value"):
                    return _dims(value.tensor_spec_value.shape) or ()
    raise ContractError(
        "Cannot find an image input in the module's serving_default signature or __call__; pass an explicit "
        "image size (height, width) for this module in the config."
    )
