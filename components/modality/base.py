"""`Modality`: what one kind of input (image, text, ...) does at each stage, behind one small interface.

The stages are modality-neutral and ask the registry (`hubtfx.components.modality.registry`) for the modality the
module's contract names; a new kind of input is one subclass plus its tests, not an edit to every stage:

  stage        method                    in -> out
  ExampleGen   file_refusal, parse_file  a file's path / bytes -> the raw feature value, or why it is skipped
  Transform    preprocess                raw feature [batch] string -> the model's input tensors
  Trainer      model_input               transformed features -> the model's input (a tensor or a dict of them)
               backbone_input            the model's input -> what the backbone is called with
               check_transformed         whether Transform's output is what the module expects
               augment                   a batch of model inputs -> the same, randomly altered (stage 2 only)
  export       screen_serving_inputs     raw inputs -> which ones the raw-input signature refuses, and why
  report       render_example            one raw feature value -> HTML-safe markup (a thumbnail, a snippet)
  predict      read_input, model_inputs, local files -> the raw-input signature's arguments
               serving_signature

Every example's raw input is one bytes value in the tf.Example (`raw_feature`); the exported model's raw-input
signature takes a batch of them as `serving_input` ([batch] string).

This module imports neither TensorFlow nor any stage, so that choosing a modality stays cheap.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple


class Modality(abc.ABC):
    """One kind of input. Subclasses set the four class attributes and implement the abstract methods.

    Instances are stateless (Beam pickles them into workers and the registry shares one per name).

    Attributes:
      name: the value of ModuleContract.modality that selects this modality, e.g. "image".
      raw_feature: the tf.Example feature that holds one example's raw input (a bytes_list of one value).
      serving_input: the input name of the exported model's raw-input signature ([batch] string).
      accepted_description: what a usable input is, for messages ("decodable image (JPEG, PNG, GIF, BMP)").
    """

    name: str = ""
    raw_feature: str = ""
    serving_input: str = ""
    accepted_description: str = ""

    # ---- ExampleGen ------------------------------------------------------------------------------------------
    def file_refusal(self, relative_path: str) -> Optional[str]:
        """Why the file at `relative_path` (POSIX, relative to the class-folder root) is not an example of this
        modality, judged before it is read; None to read it. The default reads every file: its content decides."""
        del relative_path
        return None

    @abc.abstractmethod
    def parse_file(self, content: bytes) -> Tuple[Optional[bytes], Optional[str]]:
        """One file's bytes -> (the value of `raw_feature`, None), or (None, the reason the file is skipped).

        The reason is listed in the ingestion report; it should say what is wrong and how to fix it.
        """

    # ---- Transform -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def preprocess(self, raw: Any, custom_config: Mapping[str, Any]) -> Dict[str, Any]:
        """The Transform preprocessing_fn body for the raw feature: raw string tf.Tensor [batch] -> {transformed
        feature name: tf.Tensor [batch, ...]} (the label is passed through by the caller).

        It runs inside the Transform graph, which the exported model embeds, so training and serving share it.
        custom_config: Transform's custom_config (the pipeline fills it from the module's contract).
        """

    # ---- Trainer ---------------------------------------------------------------------------------------------
    def model_input(self, transformed: Mapping[str, Any]) -> Any:
        """Transform's outputs {name: tf.Tensor [batch, ...]} -> the classifier's input: one tensor, or a dict."""
        raise NotImplementedError(_not_implemented(self, "model_input"))

    def backbone_input(self, model_input: Any) -> Any:
        """The classifier's input -> what the backbone (hub.KerasLayer) is called with; the input itself by default."""
        return model_input

    def input_description(self, transformed_feature_spec: Mapping[str, Any]) -> Dict[str, Any]:
        """The input size facts the exported model records (exported_model.ModelFacts), e.g. {"image_size": [h, w]}."""
        raise NotImplementedError(_not_implemented(self, "input_description"))

    def check_transformed(self, transformed_feature_spec: Mapping[str, Any], contract) -> Optional[str]:
        """None when Transform's output (TFT's transformed feature spec) is what the module's contract expects, else
        a message naming both and the fix."""
        raise NotImplementedError(_not_implemented(self, "check_transformed"))

    def augment(self, inputs: Any, seed: int) -> Any:
        """A batch of transformed model inputs (tf.Tensor [batch, ...]) -> the same shape and dtype, randomly
        altered for stage 2's fine-tuning; return `inputs` unchanged when the modality has no augmentation.
        Runs in a tf.data map (graph mode): op seeds derived from `seed` keep runs reproducible."""

    # ---- export ----------------------------------------------------------------------------------------------
    def screen_serving_inputs(self, raw: Any) -> Tuple[Any, Any]:
        """The raw-input signature's inputs, string [batch] -> (errors string [batch]: "" for an input the model
        scores, else why it does not; the inputs with each refused one replaced by a placeholder the Transform
        graph accepts). Runs in the exported model's graph."""
        raise NotImplementedError(_not_implemented(self, "screen_serving_inputs"))

    # ---- report ----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def render_example(self, raw: bytes, alt: str) -> str:
        """One example's raw feature value -> HTML markup showing it, safe to insert as is (every piece of the
        input is escaped; a markupsafe.Markup, so an autoescaping template does not escape it again).
        alt: a text description of the example, for readers who cannot see the rendering."""

    # ---- predict ---------------------------------------------------------------------------------------------
    def read_input(self, path: str) -> Tuple[Optional[bytes], Optional[str]]:
        """A local file -> (the raw input the serving signature takes, None), or (None, why it cannot be scored).
        The default passes the file's bytes as they are; the model judges their content."""
        return read_file_bytes(path)

    def model_inputs(self, raw_values: Sequence[bytes]) -> Dict[str, Any]:
        """Raw input values (one per example) -> the keyword arguments of `serving_signature`:
        {serving_input: tf.Tensor [batch] string}."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return {self.serving_input: tf.constant(list(raw_values), dtype=tf.string)}

    def serving_signature(self, loaded) -> Any:
        """The signature of a loaded model (tf.saved_model.load) that takes this modality's raw inputs: the default
        signature if its only input is `serving_input`, else the first other one whose only input it is.

        Raises ValueError naming the model's signatures when there is none.
        """
        candidates = sorted(loaded.signatures.items(), key=lambda item: item[0] != "serving_default")
        for _, signature in candidates:
            if takes_only(signature, self.serving_input):
                return signature
        raise ValueError(f"The model has no signature that takes `{self.serving_input}` (signatures: "
                         f"{sorted(loaded.signatures)}); was it exported by hubtfx for {self.name} inputs?")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _not_implemented(modality: Modality, method: str) -> str:
    return (f"The {modality.name!r} modality ({type(modality).__name__}) does not implement {method}, which training "
            "and export need; implement it (see hubtfx.components.modality.base.Modality).")


def takes_only(signature, input_name: str) -> bool:
    """Whether a concrete function's keyword inputs are exactly `input_name`."""
    return list(signature.structured_input_signature[1]) == [input_name]


def read_file_bytes(path: str) -> Tuple[Optional[bytes], Optional[str]]:
    """(content, None), or (None, "cannot read the file: <reason>") for a local file that cannot be opened."""
    try:
        with open(path, "rb") as f:
            return f.read(), None
    except OSError as e:
        return None, f"cannot read the file: {e.strerror}"

