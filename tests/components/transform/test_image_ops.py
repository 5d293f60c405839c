"""Decoding: every supported format becomes 3-channel RGB at the module's size and value range."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hubtfx.components.transform import image_ops, preprocessing


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _red_square(mode="RGB"):
    return Image.new("RGB", (40, 30), (200, 10, 10)).convert(mode)


CASES = {
    "jpeg": lambda: _encode(_red_square(), "JPEG", quality=95),
    "png_rgb": lambda: _encode(_red_square(), "PNG"),
    "png_rgba": lambda: _encode(_red_square("RGBA"), "PNG"),
    "png_palette": lambda: _encode(_red_square().convert("P"), "PNG"),
    "gif": lambda: _encode(_red_square().convert("P"), "GIF"),
    "bmp": lambda: _encode(_red_square(), "BMP"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_colour_formats_decode_to_the_same_rgb(name):
    image = image_ops.resize_and_scale(image_ops.decode_rgb(CASES[name]()), (16, 16), (0.0, 1.0)).numpy()
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(image.mean(axis=(0, 1)), [200 / 255, 10 / 255, 10 / 255], atol=0.04)


def test_grayscale_and_16_bit_png_become_three_equal_channels():
    gray = Image.new("L", (20, 20), 128)
    sixteen = Image.fromarray(np.full((20, 20), 128 * 257, dtype=np.uint16))
    for data in (_encode(gray, "JPEG"), _encode(gray, "PNG"), _encode(sixteen, "PNG")):
        image = image_ops.decode_rgb(data).numpy()
        assert image.shape == (20, 20, 3)
        assert np.all(image[..., 0] == image[..., 1]) and np.all(image[..., 1] == image[..., 2])
        assert abs(int(image.mean()) - 128) <= 1


def test_value_range_follows_the_contract():
    white = _encode(Image.new("RGB", (8, 8), (255, 255, 255)), "PNG")
    black = _encode(Image.new("RGB", (8, 8), (0, 0, 0)), "PNG")
    batch = image_ops.decode_batch(tf.constant([white, black]), (4, 4), (-1.0, 1.0)).numpy()
    assert batch.shape == (2, 4, 4, 3)
    assert batch[0].min() == pytest.approx(1.0) and batch[1].max() == pytest.approx(-1.0)


def test_preprocessing_fn_outputs_images_and_labels():
    data = CASES["jpeg"]()
    outputs = preprocessing.preprocessing_fn(
        {"image_raw": tf.constant([[data], [data]]), "label": tf.constant([[3], [1]], tf.int64)},
        {"image_size": [24, 32], "value_range": [0.0, 1.0]})
    assert outputs["image"].shape == (2, 24, 32, 3)
    assert outputs["image"].dtype == tf.float32
    assert outputs["label"].numpy().tolist() == [3, 1]


def test_undecodable_bytes_raise_instead_of_producing_pixels():
    with pytest.raises(tf.errors.InvalidArgumentError):
        image_ops.decode_rgb(tf.constant(b"not an image"))


def _checkerboard(height: int, width: int) -> bytes:
    pixels = ((np.indices((height, width)).sum(axis=0) % 2) * 255).astype(np.uint8)
    return _encode(Image.fromarray(pixels).convert("RGB"), "PNG")


def test_the_contracts_resize_method_is_the_one_applied():
    raw = tf.constant([_checkerboard(9, 7)])
    config = {"image_size": [32, 32], "value_range": [0.0, 1.0]}
    bicubic = preprocessing.preprocessing_fn({"image_raw": tf.reshape(raw, [-1, 1])},
                                             {**config, "resize_method": "bicubic"})["image"].numpy()
    np.testing.assert_array_equal(bicubic, image_ops.decode_batch(raw, (32, 32), (0, 1), "bicubic").numpy())
    bilinear = image_ops.decode_batch(raw, (32, 32), (0, 1), "bilinear").numpy()
    assert np.abs(bicubic - bilinear).max() > 0.05
    assert 0.0 <= bicubic.min() and bicubic.max() <= 1.0  # bicubic overshoot is clipped


def test_aspect_policies_squash_crop_and_pad():
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20] = (255, 0, 0)   # left third red
    wide[:, 20:40] = (0, 255, 0)  # middle green
    wide[:, 40:] = (0, 0, 255)    # right third blue
    image = tf.constant(wide)
    squash = image_ops.resize_and_scale(image, (30, 30), (0, 1), "bilinear", "squash").numpy()
    crop = image_ops.resize_and_scale(image, (30, 30), (0, 1), "bilinear", "crop").numpy()
    pad = image_ops.resize_and_scale(image, (30, 30), (0, 1), "bilinear", "pad").numpy()
    assert squash.shape == crop.shape == pad.shape == (30, 30, 3)
    assert squash[15, 2].argmax() == 0 and squash[15, 27].argmax() == 2  # all three colours kept, squeezed
    assert (crop[:, :, 1] > 0.9).all()  # the centred square is the green middle
    assert pad[0].max() == 0.0 and pad[-1].max() == 0.0 and pad[15, 2].argmax() == 0  # black bars, whole image
    with pytest.raises(ValueError, match="aspect must be one of"):
        image_ops.resize_and_scale(image, (30, 30), (0, 1), "bilinear", "stretch")


def test_a_batch_graph_calls_one_shared_trace_of_the_per_image_graph():
    # TFT traces the preprocessing_fn about nine times per run; the per-image graph (~4,000 nodes) is traced once.
    args = (224, 224, (0.0, 1.0), "bicubic", "crop", image_ops.MAX_PIXELS)
    for _ in range(3):
        tf.function(lambda b: image_ops.decode_batch(b, args[:2], args[2], args[3], args[4]), autograph=False
                    ).get_concrete_function(tf.TensorSpec([None], tf.string))
    assert image_ops._decode_one_function(*args).experimental_get_tracing_count() == 1  # pylint: disable=protected-access
    graph = tf.Graph()  # TF1 graphs inline it instead (a shared function would keep every such graph alive)
    with graph.as_default():
        image_ops.decode_batch(tf.compat.v1.placeholder(tf.string, [None]), args[:2], args[2], args[3], args[4])
    assert image_ops._decode_one_function(*args).experimental_get_tracing_count() == 1  # pylint: disable=protected-access
