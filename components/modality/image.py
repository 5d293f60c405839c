"""`ImageModality`: encoded image files (JPEG, PNG, GIF, BMP) for TF Hub image modules.

It adapts the stages' existing image code rather than holding a copy of it: decoding and its verdicts live in
`components/transform/image_ops.py`, ExampleGen's skip reason in `components/example_gen/executor.py`, stage 2's
crop-and-mirror in `components/trainer/data.py` and the signature lookup in `components/trainer/exported_model.py`.
ExampleGen's and the Trainer's modules are imported when a method needs them, so that asking for this modality
(predict, the report) does not import Beam, TFX or TFT.
"""
from __future__ import annotations

import base64
import html
import io
from typing import Any, Dict, Mapping, Optional, Tuple

import markupsafe
import tensorflow as tf
from PIL import Image

from hubtfx.components.modality.base import Modality
from hubtfx.components.trainer import exported_model
from hubtfx.components.common import feature_keys
from hubtfx.components.transform import image_ops

# Base64 text (RFC 4648 alphabet, optionally with line breaks): what a JSON request delivers when an image was
# sent as a plain string instead of {"b64": ...}, which TF Serving passes on undecoded.
_BASE64_TEXT = r"[A-Za-z0-9+/=\r\n]+"
_BASE64_HINT = ('; the input is base64 text: send it as {"b64": "..."} in the JSON request so that the server '
                'decodes it')

# The report's thumbnails: at most this many pixels on the longer side, aspect kept.
THUMBNAIL_PIXELS = 96


class ImageModality(Modality):
    """Images: the raw feature is a file's encoded bytes; the model input is float32 [batch, height, width, 3].

    Transform's custom_config gives the module contract's `image_size` (height, width), `value_range` (low, high)
    and `resize_method`, and the user's `aspect` policy.
    """

    name = "image"
    raw_feature = feature_keys.IMAGE_KEY  # "image_raw"
    serving_input = exported_model.IMAGE_INPUT  # "image_bytes"
    accepted_description = f"decodable image ({image_ops.SUPPORTED_FORMATS})"

    def parse_file(self, content: bytes) -> Tuple[Optional[bytes], Optional[str]]:
        """(content, None) when Transform decodes it to the right pixels, else (None, the reason), the one the
        exported model gives for the same bytes (image_ops.decode_failure_reason). The bytes are
        stored as they are: decoding happens in Transform."""
        reason = image_ops.decode_failure_reason(content)
        return (None, reason) if reason is not None else (content, None)

    def preprocess(self, raw: tf.Tensor, custom_config: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
        """Encoded images string [batch] -> {"image": float32 [batch, height, width, 3] in value_range}
        (image_ops.decode_batch; refused images raise InvalidArgumentError)."""
        return {feature_keys.TRANSFORMED_IMAGE_KEY: image_ops.decode_batch(
            raw, tuple(custom_config["image_size"]), custom_config["value_range"],
            custom_config.get("resize_method", "bilinear"), custom_config.get("aspect", "squash"))}

    def model_input(self, transformed: Mapping[str, tf.Tensor]) -> tf.Tensor:
        return transformed[feature_keys.TRANSFORMED_IMAGE_KEY]

    def input_description(self, transformed_feature_spec: Mapping[str, Any]) -> Dict[str, Any]:
        shape = transformed_feature_spec[feature_keys.TRANSFORMED_IMAGE_KEY].shape
        return {"image_size": [int(shape[0]), int(shape[1])]}

    def check_transformed(self, transformed_feature_spec: Mapping[str, Any], contract) -> Optional[str]:
        produced = list(transformed_feature_spec[feature_keys.TRANSFORMED_IMAGE_KEY].shape)
        expected = [*contract.image_size, contract.channels]
        if produced == expected:
            return None
        return (f"Transform produces images of shape {produced} but the module expects {expected}. Rerun the "
                "pipeline so that Transform picks up the module's contract, or set image_size in the config to the "
                "module's input size")

    def screen_serving_inputs(self, raw: tf.Tensor):
        """Encoded images [batch] -> (image_ops.image_errors, plus a hint when the input is base64 text; the
        bytes, refused images swapped for image_ops.PLACEHOLDER_IMAGE)."""
        errors = image_ops.image_errors(raw)
        scored = tf.equal(errors, "")
        base64_text = tf.logical_and(tf.logical_not(scored), tf.strings.regex_full_match(raw, _BASE64_TEXT))
        errors = tf.where(base64_text, errors + _BASE64_HINT, errors)
        return errors, tf.where(scored, raw, image_ops.PLACEHOLDER_IMAGE)

    def augment(self, inputs: tf.Tensor, seed: int) -> tf.Tensor:
        """float32 [batch, height, width, 3] -> the same: a random 80-100% crop resized back, mirrored for about
        half the images (trainer.data.augment)."""
        from hubtfx.components.trainer import data  # pylint: disable=import-outside-toplevel
        return data.augment(inputs, seed)

    def thumbnail_png(self, raw: bytes) -> bytes:
        """Encoded image -> PNG bytes of an RGB thumbnail at most THUMBNAIL_PIXELS on its longer side."""
        image = Image.open(io.BytesIO(raw)).convert("RGB")
        image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def render_example(self, raw: bytes, alt: str) -> str:
        """Encoded image -> `<img class="thumb" alt=... src="data:image/png;base64,...">` of its thumbnail (the
        report's `thumb` style sizes it)."""
        data = base64.b64encode(self.thumbnail_png(raw)).decode("ascii")
        # html.escape, not Markup.format: the report has always escaped quotes as &quot; / &#x27;.
        return markupsafe.Markup(
            f'<img class="thumb" alt="{html.escape(str(alt), quote=True)}" src="data:image/png;base64,{data}">')

    def serving_signature(self, loaded) -> Any:
        """The image-bytes signature: `serving_default`, or `serving_bytes` of models exported before the default
        took image bytes (exported_model.image_signature)."""
        return exported_model.image_signature(loaded)
