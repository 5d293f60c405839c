"""Export: one SavedModel with two serving signatures that share one preprocessing path, the Transform graph.

- `serving_default`: serialized tf.Examples (`examples`), the TFX/TFMA convention.
- `serving_bytes`: encoded image bytes (`image_bytes`; TF Serving and Vertex accept {"b64": ...} for it).
Both return `probabilities` [b, classes], `class_id` [b] and `class_name` [b]; class names are embedded.
`serving_bytes` also returns `error` [b]: "" for a scored image, else why it was not scored (undecodable, or
over image_ops.MAX_PIXELS); such an image gets zero probabilities, class_id -1 and class_name "", and never
fails the rest of its batch. Checking costs one extra decode per image.
The backbone's variables and functions are saved into the model, so it runs with the Hub module gone.
"""
from typing import Dict, Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from components.transform import image_ops, preprocessing

EXAMPLES_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"


def _serving_functions(classifier: tf_keras.Model, tft_layer, class_names: Sequence[str]):
    names = tf.constant(list(class_names), dtype=tf.string)

    def predict_raw(raw_features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        transformed = tft_layer(raw_features)
        logits = classifier(transformed[preprocessing.TRANSFORMED_IMAGE_KEY], training=False)
        probabilities = tf.nn.softmax(logits, axis=-1)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "class_id": class_id, "class_name": tf.gather(names, class_id)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized_examples):
        raw = tf.io.parse_example(
            serialized_examples, {preprocessing.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)})
        return predict_raw(raw)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        errors = image_ops.image_errors(image_bytes)
        scored = tf.equal(errors, "")
        # Rejected images are swapped for a valid placeholder so the shared Transform graph can run the batch.
        safe_bytes = tf.where(scored, image_bytes, image_ops.PLACEHOLDER_IMAGE)
        outputs = predict_raw({preprocessing.IMAGE_KEY: tf.reshape(safe_bytes, [-1, 1])})
        return {
            "probabilities": tf.where(scored[:, tf.newaxis], outputs["probabilities"], 0.0),
            "class_id": tf.where(scored, outputs["class_id"], tf.constant(-1, tf.int64)),
            "class_name": tf.where(scored, outputs["class_name"], ""),
            "error": errors,
        }

    return serve_examples, serve_bytes


def export_serving_model(classifier: tf_keras.Model, tft_output: tft.TFTransformOutput,
                         class_names: Sequence[str], export_dir: str) -> None:
    """Saves `classifier` with the Transform graph and both signatures to `export_dir`."""
    # Tracked as an attribute so that the Transform graph's assets and variables are saved with the model.
    classifier.tft_layer = tft_output.transform_features_layer()
    serve_examples, serve_bytes = _serving_functions(classifier, classifier.tft_layer, class_names)
    classifier.save(export_dir, save_format="tf", signatures={
        EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        BYTES_SIGNATURE: serve_bytes.get_concrete_function(),
    })
