"""Export: one SavedModel whose signatures share one preprocessing path, the Transform graph.

Signature names and inputs are defined in `hubtfx.components.trainer.exported_model`:
- `serving_default` (and its old name `serving_bytes`): encoded image bytes (`image_bytes`), what a Vertex AI
  endpoint or a TF Serving request without `signature_name` calls, with `{"b64": ...}` in JSON.
- `serving_examples`: serialized tf.Examples (`examples`), for TFMA.
All return `probabilities` [b, classes], `class_id` [b] and `class_name` [b]; class names are embedded.
The image signature also returns `error` [b]: "" for a scored image, else why it was not scored (undecodable, or
over image_ops.MAX_PIXELS); such an image gets zero probabilities, class_id -1 and class_name "", and never
fails the rest of its batch. Checking costs one extra decode per image.
The backbone's variables and functions are saved into the model, so it runs with the Hub module gone; the
model's facts (classes, input size, module) go to `exported_model.FACTS_FILE` beside it.
"""
from typing import Dict, Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from hubtfx.components.common import feature_keys
from hubtfx.components.trainer import exported_model
from hubtfx.components.transform import image_ops

# Base64 text (RFC 4648 alphabet, optionally with line breaks): what a JSON request delivers when an image was
# sent as a plain string instead of {"b64": ...}, which TF Serving passes on undecoded.
_BASE64_TEXT = r"[A-Za-z0-9+/=\r\n]+"
_BASE64_HINT = ('; the input is base64 text: send it as {"b64": "..."} in the JSON request so that the server '
                'decodes it')


def _serving_functions(classifier: tf_keras.Model, tft_layer, class_names: Sequence[str]):
    names = tf.constant(list(class_names), dtype=tf.string)

    def predict_raw(raw_features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        transformed = tft_layer(raw_features)
        logits = classifier(transformed[feature_keys.TRANSFORMED_IMAGE_KEY], training=False)
        probabilities = tf.nn.softmax(logits, axis=-1)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {exported_model.PROBABILITIES: probabilities, exported_model.CLASS_ID: class_id,
                exported_model.CLASS_NAME: tf.gather(names, class_id)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=exported_model.EXAMPLES_INPUT)])
    def serve_examples(serialized_examples):
        raw = tf.io.parse_example(
            serialized_examples, {feature_keys.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)})
        return predict_raw(raw)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=exported_model.IMAGE_INPUT)])
    def serve_bytes(image_bytes):
        errors = image_ops.image_errors(image_bytes)
        scored = tf.equal(errors, "")
        base64_text = tf.logical_and(tf.logical_not(scored), tf.strings.regex_full_match(image_bytes, _BASE64_TEXT))
        errors = tf.where(base64_text, errors + _BASE64_HINT, errors)
        # Rejected images are swapped for a valid placeholder so the shared Transform graph can run the batch.
        safe_bytes = tf.where(scored, image_bytes, image_ops.PLACEHOLDER_IMAGE)
        outputs = predict_raw({feature_keys.IMAGE_KEY: tf.reshape(safe_bytes, [-1, 1])})
        return {
            exported_model.PROBABILITIES: tf.where(scored[:, tf.newaxis], outputs[exported_model.PROBABILITIES], 0.0),
            exported_model.CLASS_ID: tf.where(scored, outputs[exported_model.CLASS_ID], tf.constant(-1, tf.int64)),
            exported_model.CLASS_NAME: tf.where(scored, outputs[exported_model.CLASS_NAME], ""),
            exported_model.ERROR: errors,
        }

    return serve_examples, serve_bytes


def export_serving_model(classifier: tf_keras.Model, tft_output: tft.TFTransformOutput,
                         class_names: Sequence[str], export_dir: str, module_handle: str = "",
                         module_sha256: str = "") -> None:
    """Saves `classifier` with the Transform graph and the signatures to `export_dir`, and the model's facts.

    module_handle, module_sha256: the backbone's identity as the pipeline recorded it ("" if unknown).
    """
    # Tracked as an attribute so that the Transform graph's assets and variables are saved with the model.
    classifier.tft_layer = tft_output.transform_features_layer()
    serve_examples, serve_bytes = _serving_functions(classifier, classifier.tft_layer, class_names)
    by_bytes = serve_bytes.get_concrete_function()
    classifier.save(export_dir, save_format="tf", signatures={
        exported_model.DEFAULT_SIGNATURE: by_bytes,
        exported_model.BYTES_SIGNATURE: by_bytes,
        exported_model.EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
    })
    image_shape = tft_output.transformed_feature_spec()[feature_keys.TRANSFORMED_IMAGE_KEY].shape
    exported_model.write_facts(export_dir, exported_model.ModelFacts(
        class_names=tuple(class_names), image_size=(int(image_shape[0]), int(image_shape[1])),
        module_handle=module_handle, module_sha256=module_sha256))
