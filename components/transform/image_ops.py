"""Image decoding shared by training and serving: the only place pixels are produced from file bytes.

Every image, whatever its format (JPEG, PNG incl. RGBA/16-bit/palette, GIF first frame, BMP, grayscale), becomes
3-channel RGB, is resized to the module's input size and scaled to the module's value range. The Transform graph
embeds these ops, so the exported model's serving signatures run exactly the same code.

Images over MAX_PIXELS are refused from their header, before any pixel is decoded: ExampleGen skips them with a
reason and the image signature (`serving_default`) returns a per-image error (see image_errors), so one huge upload
cannot exhaust the memory of a Beam worker or of the server. EXIF orientation is not applied (TF's decoders
ignore it), in training and serving alike: pixels are used as stored.
"""
from typing import Sequence, Tuple

import tensorflow as tf

from components.transform.policies import ASPECT_POLICIES

# 50 megapixels: above any camera photo (a 12000 x 12000 image is 144 MP), while one decoded float32 copy at
# the limit stays under 1 GB. Change it here only; it is checked in ExampleGen and baked into exported models.
MAX_PIXELS = 50_000_000

SUPPORTED_FORMATS = "JPEG, PNG, GIF, BMP"
# A valid 1x1 PNG: stands in for a rejected image so that the rest of its batch can still be scored.
PLACEHOLDER_IMAGE = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
    b"\x00\x00\x00\x0cIDATx\x9cc```\x00\x00\x00\x04\x00\x01\xf6\x178U\x00\x00\x00\x00IEND\xaeB`\x82")


def _starts_with(image_bytes: tf.Tensor, magic: bytes) -> tf.Tensor:
    return tf.equal(tf.strings.substr(image_bytes, 0, len(magic)), magic)


def _header_uint(image_bytes: tf.Tensor, offset: int, size: int, big_endian: bool) -> tf.Tensor:
    """The unsigned integer of `size` bytes at `offset`, as int64 (0 when the file is shorter)."""
    digits = tf.cast(tf.io.decode_raw(tf.strings.substr(image_bytes, offset, size), tf.uint8), tf.int64)
    if big_endian:
        digits = tf.reverse(digits, [0])
    weights = tf.bitwise.left_shift(tf.constant(1, tf.int64), 8 * tf.range(tf.size(digits, tf.int64)))
    return tf.reduce_sum(digits * weights)


def _bmp_height(image_bytes: tf.Tensor) -> tf.Tensor:
    # Signed: a negative height marks a top-down bitmap.
    height = _header_uint(image_bytes, 22, 4, big_endian=False)
    return tf.where(height >= 2**31, 2**32 - height, height)


def header_dimensions(image_bytes: tf.Tensor) -> tf.Tensor:
    """(height, width) int64 read from one encoded image's header without decoding pixels; (0, 0) when the
    format is not recognised. Raises InvalidArgumentError on a JPEG whose header is corrupt."""
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(image_bytes)[:2], tf.int64)

    def png():
        return tf.stack([_header_uint(image_bytes, 20, 4, True), _header_uint(image_bytes, 16, 4, True)])

    def gif():
        return tf.stack([_header_uint(image_bytes, 8, 2, False), _header_uint(image_bytes, 6, 2, False)])

    def bmp():
        return tf.stack([_bmp_height(image_bytes), _header_uint(image_bytes, 18, 4, False)])

    return tf.case([
        (_starts_with(image_bytes, b"\xff\xd8\xff"), jpeg),
        (_starts_with(image_bytes, b"\x89PNG\r\n\x1a\n"), png),
        (_starts_with(image_bytes, b"GIF8"), gif),
        (_starts_with(image_bytes, b"BM"), bmp),
    ], default=lambda: tf.zeros([2], tf.int64), exclusive=False)


def too_large_message(height, width, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    return tf.strings.format("image is {} x {} pixels, over the limit of {}; downscale it",
                             (width, height, max_pixels))


def _single_image_error(image_bytes: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """"" if `image_bytes` decodes within the pixel limit, a message if it is too large; raises if undecodable."""
    dimensions = header_dimensions(image_bytes)

    def decodes():
        # The message depends on the decoded size so that the decode really runs (and fails if it must).
        return tf.where(tf.size(decode_rgb(image_bytes)) >= 0, "", "undecodable")

    return tf.cond(dimensions[0] * dimensions[1] > max_pixels,
                   lambda: too_large_message(dimensions[0], dimensions[1], max_pixels), decodes)


def image_errors(image_bytes: tf.Tensor, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Per image of a batch [n], "" if decode_rgb can decode it within the pixel limit, else why not.

    Each image is tried in a tf.data map whose failures are dropped (ignore_errors), so one bad image never
    fails the batch; the survivors' indices put the verdicts back in order.
    """
    count = tf.shape(image_bytes, out_type=tf.int64)[0]
    known = tf.reduce_any(tf.stack([_starts_with(image_bytes, magic) for magic in (
        b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM")]), axis=0)
    undecodable = tf.where(
        tf.equal(tf.strings.length(image_bytes), 0), "empty input (0 bytes)",
        tf.where(known, "corrupt or truncated image: it cannot be decoded",
                 f"not an image: content is none of {SUPPORTED_FORMATS}"))
    verdicts = (tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes))
                .map(lambda index, raw: (index, _single_image_error(raw, max_pixels)))
                .ignore_errors())
    return verdicts.reduce(undecodable, lambda errors, verdict: tf.tensor_scatter_nd_update(
        errors, [[verdict[0]]], [verdict[1]]))


def decode_rgb(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes one encoded image to uint8 RGB [h, w, 3]; animated GIFs give their first frame."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def _centre_crop_to_aspect(image: tf.Tensor, size: Tuple[int, int]) -> tf.Tensor:
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    target = float(size[0]) / float(size[1])  # height / width
    height = tf.minimum(shape[0], tf.round(shape[1] * target))
    width = tf.minimum(shape[1], tf.round(shape[0] / target))
    top = tf.cast((shape[0] - height) // 2, tf.int32)
    left = tf.cast((shape[1] - width) // 2, tf.int32)
    return tf.image.crop_to_bounding_box(image, top, left, tf.maximum(tf.cast(height, tf.int32), 1),
                                         tf.maximum(tf.cast(width, tf.int32), 1))


def resize_and_scale(image: tf.Tensor, size: Tuple[int, int], value_range: Sequence[float],
                     method: str = "bilinear", aspect: str = "squash") -> tf.Tensor:
    """uint8 RGB [h, w, 3] -> float32 [size[0], size[1], 3] in `value_range`.

    method: the tf.image.resize method (antialiased when downscaling), normally the module contract's
    resize_method; aspect: one of ASPECT_POLICIES. Bicubic can overshoot [0, 255], so values are clipped first.
    """
    if aspect not in ASPECT_POLICIES:
        raise ValueError(f"aspect must be one of {ASPECT_POLICIES}, got {aspect!r}.")
    low, high = float(value_range[0]), float(value_range[1])
    pixels = tf.cast(image, tf.float32)
    if aspect == "crop":
        pixels = _centre_crop_to_aspect(pixels, size)
    if aspect == "pad":
        resized = tf.image.resize_with_pad(pixels, size[0], size[1], method=method, antialias=True)
    else:
        resized = tf.image.resize(pixels, size, method=method, antialias=True)
    scaled = tf.clip_by_value(resized, 0.0, 255.0) / 255.0
    return low + scaled * (high - low)


def decode_batch(image_bytes: tf.Tensor, size: Tuple[int, int], value_range: Sequence[float],
                 method: str = "bilinear", aspect: str = "squash") -> tf.Tensor:
    """Encoded images string [batch] -> float32 [batch, height, width, 3] (see resize_and_scale)."""
    height, width = int(size[0]), int(size[1])
    return tf.map_fn(
        lambda raw: resize_and_scale(decode_rgb(raw), (height, width), value_range, method, aspect),
        image_bytes,
        fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
    )
