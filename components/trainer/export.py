"""Export: one SavedModel whose signatures share one preprocessing path, the Transform graph.

Signature names and inputs are defined in `hubtfx.components.trainer.exported_model`:
- `serving_default`: the modality's raw inputs (Modality.serving_input), what a Vertex AI endpoint or a TF
  Serving request without `signature_name` calls: encoded image bytes (`image_bytes`, `{"b64": ...}` in JSON; also
  under its old name `serving_bytes`), or texts (`text`, `{"instances": ["some text", ...]}`).
- `serving_examples`: serialized tf.Examples (`examples`), for TFMA.
All return `probabilities` [b, classes] (softmax(temperature * logits), the trainer's calibration), `class_id` [b]
and `class_name` [b]; class names are embedded.
The raw-input signature also returns `error` [b]: "" for a scored input, else why it was not scored
(Modality.screen_serving_inputs: an undecodable image or one over image_ops.MAX_PIXELS, a text that is not UTF-8);
such an input gets zero probabilities, class_id -1 and class_name "", and never fails the rest of its batch.
Checking costs one extra decode per image.
The backbone's variables and functions are saved into the model, so it runs with the Hub module gone; the
model's facts (classes, input size, module) go to `exported_model.FACTS_FILE` beside it.
"""
from typing import Dict, Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from hubtfx.components.modality import registry as modalities
from hubtfx.components.trainer import exported_model


def _serving_functions(classifier: tf_keras.Model, tft_layer, class_names: Sequence[str], modality,
                       temperature: float):
    names = tf.constant(list(class_names), dtype=tf.string)

    def predict_raw(raw_features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        transformed = tft_layer(raw_features)
        logits = classifier(modality.model_input(transformed), training=False)
        probabilities = tf.nn.softmax(temperature * logits, axis=-1)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {exported_model.PROBABILITIES: probabilities, exported_model.CLASS_ID: class_id,
                exported_model.CLASS_NAME: tf.gather(names, class_id)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=exported_model.EXAMPLES_INPUT)])
    def serve_examples(serialized_examples):
        raw = tf.io.parse_example(
            serialized_examples, {modality.raw_feature: tf.io.FixedLenFeature([1], tf.string)})
        return predict_raw(raw)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=modality.serving_input)])
    def serve_raw(raw_inputs):
        errors, safe_inputs = modality.screen_serving_inputs(raw_inputs)
        scored = tf.equal(errors, "")
        # Refused inputs are swapped for a placeholder so the shared Transform graph can run the batch.
        outputs = predict_raw({modality.raw_feature: tf.reshape(safe_inputs, [-1, 1])})
        return {
            exported_model.PROBABILITIES: tf.where(scored[:, tf.newaxis], outputs[exported_model.PROBABILITIES], 0.0),
            exported_model.CLASS_ID: tf.where(scored, outputs[exported_model.CLASS_ID], tf.constant(-1, tf.int64)),
            exported_model.CLASS_NAME: tf.where(scored, outputs[exported_model.CLASS_NAME], ""),
            exported_model.ERROR: errors,
        }

    return serve_examples, serve_raw


def export_serving_model(classifier: tf_keras.Model, tft_output: tft.TFTransformOutput,
                         class_names: Sequence[str], export_dir: str, module_handle: str = "",
                         module_sha256: str = "", modality=None, temperature: float = 1.0) -> None:
    """Saves `classifier` with the Transform graph and the signatures to `export_dir`, and the model's facts.

    module_handle, module_sha256: the backbone's identity as the pipeline recorded it ("" if unknown).
    modality: the inputs' Modality (image when None): its raw feature, raw-input signature and input facts.
    temperature: > 0, the served probabilities are softmax(temperature * the classifier's logits)
    (run.TrainingOutcome.temperature); it never changes class_id.
    """
    modality = modality or modalities.default_modality()
    # Tracked as an attribute so that the Transform graph's assets and variables are saved with the model.
    classifier.tft_layer = tft_output.transform_features_layer()
    serve_examples, serve_raw = _serving_functions(classifier, classifier.tft_layer, class_names, modality,
                                                   float(temperature))
    by_raw = serve_raw.get_concrete_function()
    signatures = {exported_model.DEFAULT_SIGNATURE: by_raw,
                  exported_model.EXAMPLES_SIGNATURE: serve_examples.get_concrete_function()}
    if modality.name == modalities.DEFAULT_MODALITY:
        signatures[exported_model.BYTES_SIGNATURE] = by_raw  # the image signature's older name
    classifier.save(export_dir, save_format="tf", signatures=signatures)
    description = modality.input_description(tft_output.transformed_feature_spec())
    exported_model.write_facts(export_dir, exported_model.ModelFacts(
        class_names=tuple(class_names), image_size=tuple(description.get("image_size") or ()) or None,
        seq_length=description.get("seq_length"), modality=modality.name,
        module_handle=module_handle, module_sha256=module_sha256))
