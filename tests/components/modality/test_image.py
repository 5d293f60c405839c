"""ImageModality gives exactly what the stages' image code gave before it was routed through the modality."""
import base64
import html
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hubtfx.components.example_gen import executor
from hubtfx.components.modality import registry
from hubtfx.components.modality.image import ImageModality
from hubtfx.components.trainer import data
from hubtfx.components.common import feature_keys
from hubtfx.components.transform import image_ops, preprocessing

CONFIG = {"image_size": [24, 32], "value_range": [-1.0, 1.0], "resize_method": "bicubic", "aspect": "crop"}


@pytest.fixture(scope="module")
def images(sample_root):
    """Two real files of the sample data set, a JPEG and a PNG, as bytes."""
    folder = os.path.join(sample_root, "circle")
    names = sorted(os.listdir(folder))
    chosen = [next(n for n in names if n.endswith(".jpg")), next(n for n in names if n.endswith(".png"))]
    contents = []
    for name in chosen:
        with open(os.path.join(folder, name), "rb") as f:
            contents.append(f.read())
    return contents


@pytest.fixture(scope="module")
def image():
    return registry.modality_named("image")


def test_the_registry_gives_the_image_modality(image):
    assert isinstance(image, ImageModality)
    assert (image.name, image.raw_feature, image.serving_input) == ("image", "image_raw", "image_bytes")


def test_ingestion_keeps_the_bytes_of_good_files_and_gives_the_old_reason_for_bad_ones(image, images):
    for content in images:
        assert image.parse_file(content) == (content, None)
    for bad in (b"", b"plain text", images[0][:200]):
        reason = executor.decode_failure_reason(bad)
        assert reason
        assert image.parse_file(bad) == (None, reason)
    assert image.file_refusal("circle/notes.txt") is None  # images are told by content, not by name


def test_preprocessing_gives_the_same_tensor_as_decode_batch(image, images):
    raw = tf.constant(images)
    expected = image_ops.decode_batch(raw, (24, 32), (-1.0, 1.0), "bicubic", "crop").numpy()
    produced = image.preprocess(raw, CONFIG)
    assert list(produced) == [feature_keys.TRANSFORMED_IMAGE_KEY]
    np.testing.assert_array_equal(produced["image"].numpy(), expected)
    # The Transform entry point dispatches to it (the modality comes from custom_config, image by default).
    for config in (CONFIG, {**CONFIG, "modality": "image"}):
        outputs = preprocessing.preprocessing_fn({"image_raw": tf.reshape(raw, [-1, 1])}, config)
        np.testing.assert_array_equal(outputs["image"].numpy(), expected)


def test_augmentation_is_stage_2s_crop_and_mirror(image, images):
    batch = image_ops.decode_batch(tf.constant(images * 4), (24, 32), (0.0, 1.0))

    def run(augment):
        tf.random.set_seed(7)
        return tf.function(lambda x: augment(x, 5))(batch).numpy()

    np.testing.assert_array_equal(run(image.augment), run(data.augment))


def _old_thumbnail_png(image_bytes: bytes) -> bytes:
    """The report's thumbnail code before it moved into ImageModality."""
    picture = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    picture.thumbnail((96, 96))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def test_report_rendering_is_the_old_thumbnail_markup(image, images):
    alt = 'Misclassified: <b>"x"</b>&\'y\'.jpg'
    for content in images:
        png = _old_thumbnail_png(content)
        assert image.thumbnail_png(content) == png
        old_markup = (f'<img class="thumb" alt="{html.escape(alt, quote=True)}" '
                      f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')
        rendered = image.render_example(content, alt)
        assert rendered == old_markup
        assert rendered.__html__() == old_markup  # markupsafe: an autoescaping template keeps it as is
        assert max(Image.open(io.BytesIO(png)).size) == 96


def test_predict_reads_files_as_bytes_and_passes_them_as_image_bytes(image, images, tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(images[0])
    assert image.read_input(str(path)) == (images[0], None)
    assert image.read_input(str(tmp_path / "missing.jpg")) == (None, "cannot read the file: No such file or directory")
    inputs = image.model_inputs(images)
    assert list(inputs) == ["image_bytes"]
    assert inputs["image_bytes"].dtype == tf.string
    assert inputs["image_bytes"].numpy().tolist() == images


class _Model(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def by_bytes(self, image_bytes):
        return {"class_id": tf.zeros_like(tf.strings.length(image_bytes), tf.int64)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def by_examples(self, examples):
        return {"class_id": tf.ones_like(tf.strings.length(examples), tf.int64)}


def _saved(tmp_path, name, signatures):
    model = _Model()
    path = str(tmp_path / name)
    tf.saved_model.save(model, path, signatures={
        key: getattr(model, method).get_concrete_function() for key, method in signatures.items()})
    return tf.saved_model.load(path)


def test_the_serving_signature_is_found_in_current_and_old_exports(image, tmp_path):
    current = _saved(tmp_path, "current", {"serving_default": "by_bytes", "serving_examples": "by_examples"})
    old = _saved(tmp_path, "old", {"serving_default": "by_examples", "serving_bytes": "by_bytes"})
    for loaded in (current, old):
        assert registry.modality_for_model(loaded) is image
        signature = image.serving_signature(loaded)
        assert list(signature.structured_input_signature[1]) == ["image_bytes"]
    neither = _saved(tmp_path, "neither", {"serving_default": "by_examples"})
    with pytest.raises(registry.UnknownModalityError, match="`image_bytes` \\(image\\)"):
        registry.modality_for_model(neither)
