"""Image decoding shared by training and serving: the only place pixels are produced from file bytes.

Every image, whatever its format (JPEG, PNG incl. RGBA/16-bit/palette, GIF first frame, BMP, grayscale), becomes
3-channel RGB, is resized to the module's input size and scaled to the module's value range. The Transform graph
embeds these ops, so the exported model's serving signatures run exactly the same code.

A file either decodes to the pixels a reference decoder (libjpeg's accurate IDCT, libpng, giflib, Pillow for BMP)
gives, or is refused with the true reason, read in-graph from its header (`header_verdict`): an unsupported
variant (e.g. a 16-bit or RLE BMP, a 12-bit or lossless JPEG) says so and how to convert it; only a file that
fails to decode although its header is fine is called corrupt or truncated. TF's own decoders get some variants
wrong without an error, so this module works around them:
- BMP: TF reads an 8-bit palette BMP as grey palette indices and refuses 1/4-bit BMPs and BMPs with trailing
  bytes; every uncompressed 1/4/8/24/32-bit BMP is decoded here, in-graph, with its colour table.
- JPEG: decoded with the accurate integer IDCT (TF's default is the fast, less accurate one).
- GIF: TF turns the first frame's transparent pixels black; here they keep their palette colour (transparency
  is dropped, like an alpha channel), so a GIF decodes like its PNG twin.

Pixel limit: an image whose decoding would allocate more than MAX_PIXELS pixels is refused from its header before
any pixel is decoded. The pixels counted are those the decoder allocates, read from the structure it reads: the
JPEG frame header (via libjpeg), PNG IHDR, BMP info header, and for GIF every frame's image descriptor (giflib
decodes all frames even when only the first is used; the logical screen size is not what TF decodes).
`decode_batch` decodes a batch one image at a time when the batch's images together exceed MAX_PIXELS, so one
request of many near-limit images needs about one image's memory, not one per image.

ExampleGen skips refused images with the reason and the image signature (`serving_default`) returns the same
reason as a per-image error (see image_errors). EXIF orientation is not applied (TF's decoders ignore it), in training and
serving alike: pixels are used as stored.
"""
import functools
import re
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from hubtfx.components.transform.policies import ASPECT_POLICIES

# 50 megapixels: above any camera photo (a 12000 x 12000 image is 144 MP), while one decoded float32 copy at
# the limit stays under 1 GB. Change it here only; it is checked in ExampleGen and baked into exported models.
MAX_PIXELS = 50_000_000

SUPPORTED_FORMATS = "JPEG, PNG, GIF, BMP"
CONVERT_HINT = "convert it to PNG"
# A valid 1x1 PNG: stands in for a rejected image so that the rest of its batch can still be scored.
PLACEHOLDER_IMAGE = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
    b"\x00\x00\x00\x0cIDATx\x9cc```\x00\x00\x00\x04\x00\x01\xf6\x178U\x00\x00\x00\x00IEND\xaeB`\x82")

# (format name, offset, leading bytes): how each format's files start. The first four are decoded.
_SIGNATURES = (
    ("JPEG", 0, b"\xff\xd8\xff"),
    ("PNG", 0, b"\x89PNG\r\n\x1a\n"),
    ("GIF", 0, b"GIF87a"),
    ("GIF", 0, b"GIF89a"),
    ("BMP", 0, b"BM"),
    ("TIFF", 0, b"II*\x00"),
    ("TIFF", 0, b"MM\x00*"),
    ("JPEG 2000", 0, b"\x00\x00\x00\x0cjP  "),
    ("WEBP", 8, b"WEBP"),  # after "RIFF" and the size
    ("HEIF/AVIF", 4, b"ftypheic"),
    ("HEIF/AVIF", 4, b"ftypheix"),
    ("HEIF/AVIF", 4, b"ftypmif1"),
    ("HEIF/AVIF", 4, b"ftypavif"),
)
_DECODED_FORMATS = ("JPEG", "PNG", "GIF", "BMP")

# Upper bounds on the header walks below (each step reads one byte; ~15 us per step on one core): a JPEG has a
# handful of segments before its frame header, a GIF one step per 255-byte data sub-block (25 MB of GIF).
_JPEG_MAX_STEPS = 10_000
_GIF_MAX_STEPS = 100_000

# BMP info header fields (offsets from the file start; Microsoft BITMAPINFOHEADER / BITMAPV5HEADER).
_BMP_HEADER_SIZES = (40, 52, 56, 108, 124)  # BITMAPINFOHEADER, V2, V3, V4, V5; 12 and 64 are OS/2's
_BMP_RGB, _BMP_RLE8, _BMP_RLE4, _BMP_BITFIELDS, _BMP_JPEG, _BMP_PNG, _BMP_ALPHABITFIELDS = range(7)
_BMP_BGR_MASKS = (0x00FF0000, 0x0000FF00, 0x000000FF)  # red, green, blue: the layout of BI_RGB 32-bit pixels
_SINGLE_BYTES = tuple(bytes([value]) for value in range(256))
_ONE = np.int64(1)  # keeps tf.where branches int64


def _plain_graph(function):
    """Marks a function that builds its graph with explicit tf.cond / tf.while_loop: AutoGraph need not convert
    it (nor what it calls), which makes tracing several times faster."""
    return tf.autograph.experimental.do_not_convert(function)


def _substr(image_bytes: tf.Tensor, position, length) -> tf.Tensor:
    """tf.strings.substr that takes python ints and int64 tensors mixed, and gives "" past the end (Substr
    wants one integer type and raises when `position` is past the end)."""
    position = tf.minimum(tf.cast(position, tf.int64), tf.cast(tf.strings.length(image_bytes), tf.int64))
    return tf.strings.substr(image_bytes, position, tf.zeros_like(position) + tf.cast(length, tf.int64))


def _starts_with(image_bytes: tf.Tensor, magic: bytes, offset: int = 0) -> tf.Tensor:
    return tf.equal(_substr(image_bytes, offset, len(magic)), magic)


@_plain_graph
def image_format(image_bytes: tf.Tensor) -> tf.Tensor:
    """The format named by each image's leading bytes (a name of _SIGNATURES), "" if none; same shape, string."""
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    names = tf.fill(tf.shape(image_bytes), "")
    for name, offset, magic in reversed(_SIGNATURES):
        names = tf.where(_starts_with(image_bytes, magic, offset), name, names)
    return names


def _header_uint(image_bytes: tf.Tensor, offset, size: int, big_endian: bool) -> tf.Tensor:
    """The unsigned integer of `size` bytes at `offset`, as int64 (0 when the file is shorter)."""
    digits = tf.cast(tf.io.decode_raw(_substr(image_bytes, offset, size), tf.uint8), tf.int64)
    if big_endian:
        digits = tf.reverse(digits, [0])
    weights = tf.bitwise.left_shift(tf.constant(1, tf.int64), 8 * tf.range(tf.size(digits, tf.int64)))
    return tf.reduce_sum(digits * weights)


def _signed32(value: tf.Tensor) -> tf.Tensor:
    return tf.where(value >= 2**31, value - 2**32, value)


def _byte_reader(image_bytes: tf.Tensor):
    """(bytes as uint8 [n], n, byte(i) -> int64 that is 0 past the end) for walks over a file's structure."""
    data = tf.io.decode_raw(image_bytes, tf.uint8)
    size = tf.size(data, tf.int64)

    def byte(index):
        index = tf.convert_to_tensor(index, tf.int64)
        inside = (index >= 0) & (index < size)
        return tf.where(inside, tf.cast(tf.gather(data, tf.clip_by_value(index, 0, tf.maximum(size - 1, 0))),
                                        tf.int64), tf.constant(0, tf.int64))

    return size, byte


def _join(*parts) -> tf.Tensor:
    return tf.strings.join([part if isinstance(part, str) else tf.strings.as_string(part) for part in parts])


# ---- BMP -------------------------------------------------------------------------------------------------------

def _bmp_fields(image_bytes: tf.Tensor):
    return {
        "data_offset": _header_uint(image_bytes, 10, 4, False),
        "header_size": _header_uint(image_bytes, 14, 4, False),
        "width": _signed32(_header_uint(image_bytes, 18, 4, False)),
        "height": _signed32(_header_uint(image_bytes, 22, 4, False)),  # negative: rows stored top-down
        "bits": _header_uint(image_bytes, 28, 2, False),
        "compression": _header_uint(image_bytes, 30, 4, False),
        "colours": _header_uint(image_bytes, 46, 4, False),
    }


def _bmp_reason(image_bytes: tf.Tensor) -> tf.Tensor:
    """"" if `_decode_bmp` decodes this BMP exactly, else why not (unsupported variant) and what to do."""
    f = _bmp_fields(image_bytes)
    masks = tf.stack([_header_uint(image_bytes, 54 + 4 * i, 4, False) for i in range(3)])
    standard_masks = tf.reduce_all(tf.equal(masks, tf.constant(_BMP_BGR_MASKS, tf.int64)))
    header_ok = tf.reduce_any(tf.equal(f["header_size"], tf.constant(_BMP_HEADER_SIZES, tf.int64)))
    bits_ok = tf.reduce_any(tf.equal(f["bits"], tf.constant([1, 4, 8, 24, 32], tf.int64)))
    compression = f["compression"]
    bitfields = tf.equal(compression, _BMP_BITFIELDS) | tf.equal(compression, _BMP_ALPHABITFIELDS)
    hint = f"; {CONVERT_HINT}"
    return tf.case([
        (~header_ok, lambda: _join("unsupported BMP: ", f["header_size"],
                                   "-byte info header (OS/2 or unknown version)", hint)),
        (tf.equal(compression, _BMP_RLE8) | tf.equal(compression, _BMP_RLE4),
         lambda: tf.constant("unsupported BMP: RLE-compressed" + hint)),
        (tf.equal(compression, _BMP_JPEG) | tf.equal(compression, _BMP_PNG),
         lambda: tf.constant("unsupported BMP: it holds an embedded JPEG or PNG; extract it or " + CONVERT_HINT)),
        (~bits_ok, lambda: _join("unsupported BMP: ", f["bits"], " bits per pixel", hint)),
        (bitfields & ~(tf.equal(f["bits"], 32) & standard_masks),
         lambda: _join("unsupported BMP: ", f["bits"], "-bit pixels with colour masks other than 8-bit blue, "
                                                          "green, red", hint)),
        (~tf.equal(compression, _BMP_RGB) & ~bitfields,
         lambda: _join("unsupported BMP: compression method ", compression, hint)),
    ], default=lambda: tf.constant(""), exclusive=False)


def _decode_bmp(image_bytes: tf.Tensor) -> tf.Tensor:
    """An uncompressed 1/4/8-bit (colour table), 24-bit or 32-bit BMP -> uint8 RGB [h, w, 3].

    Rows are padded to 4 bytes and stored bottom-up unless the height is negative (Microsoft's BMP format
    reference, "Bitmap Storage"). Raises InvalidArgumentError if the pixel data or colour table is cut short or a
    pixel indexes past the colour table. Assumes `_bmp_reason` accepted the file.
    """
    f = _bmp_fields(image_bytes)
    width, height, bits = f["width"], tf.abs(f["height"]), f["bits"]
    checks = [tf.debugging.assert_positive(width, message="BMP width is not positive"),
              tf.debugging.assert_positive(height, message="BMP height is zero")]
    with tf.control_dependencies(checks):
        stride = (bits * width + 31) // 32 * 4
    pixels = tf.io.decode_raw(_substr(image_bytes, f["data_offset"], stride * height), tf.uint8)
    with tf.control_dependencies([tf.debugging.assert_equal(
            tf.size(pixels, tf.int64), stride * height, message="BMP pixel data is truncated")]):
        rows = tf.reshape(pixels, tf.stack([height, stride]))

    def true_colour():
        channels = bits // 8
        bgr = tf.reshape(rows[:, :width * channels], tf.stack([height, width, channels]))
        return tf.reverse(bgr[:, :, :3], [2])

    def palette():
        colours = tf.where(tf.equal(f["colours"], 0), tf.bitwise.left_shift(tf.constant(1, tf.int64), bits),
                           f["colours"])
        table = tf.io.decode_raw(_substr(image_bytes, 14 + f["header_size"], 4 * colours), tf.uint8)
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.size(table, tf.int64), 4 * colours, message="BMP colour table is truncated")]):
            table = tf.reverse(tf.reshape(table, [-1, 4])[:, :3], [1])  # BGR0 entries -> RGB
        per_byte = 8 // bits
        shifts = tf.cast(bits * (per_byte - 1 - tf.range(per_byte)), tf.uint8)
        mask = tf.cast(tf.bitwise.left_shift(tf.constant(1, tf.int64), bits) - 1, tf.uint8)
        indices = tf.bitwise.bitwise_and(tf.bitwise.right_shift(rows[:, :, tf.newaxis], shifts), mask)
        indices = tf.reshape(indices, tf.stack([height, -1]))[:, :width]
        with tf.control_dependencies([tf.debugging.assert_less(
                tf.cast(tf.reduce_max(indices), tf.int64), colours, message="BMP pixel outside its colour table")]):
            return tf.gather(table, tf.cast(indices, tf.int32))

    image = tf.cond(bits >= 24, true_colour, palette)
    return tf.cond(f["height"] > 0, lambda: tf.reverse(image, [0]), lambda: image)


# ---- JPEG ------------------------------------------------------------------------------------------------------

_JPEG_FRAME_MARKERS = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
_JPEG_LOSSLESS = (0xC3, 0xC7, 0xCB, 0xCF)
_JPEG_HIERARCHICAL = (0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF)
_JPEG_STANDALONE = (0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8)


def _in(value: tf.Tensor, options) -> tf.Tensor:
    return tf.reduce_any(tf.equal(value, tf.constant(options, tf.int64)))


def _jpeg_frame(image_bytes: tf.Tensor):
    """(SOF marker, sample precision, height) of the JPEG frame header: the segments are walked from the start
    (ITU-T T.81 B.1.1); marker 0 if no frame header comes before the first scan or the end."""
    size, byte = _byte_reader(image_bytes)

    def body(position, marker, steps):
        code = byte(position + 1)
        length = byte(position + 2) * 256 + byte(position + 3)
        valid = tf.equal(byte(position), 0xFF)
        found = valid & _in(code, _JPEG_FRAME_MARKERS)
        stop = ~valid | _in(code, (0xDA, 0xD9))  # a scan or the end before any frame header
        step = tf.where(tf.equal(code, 0xFF), _ONE, tf.where(_in(code, _JPEG_STANDALONE), 2 * _ONE, 2 + length))
        return (tf.where(found | stop, position, position + step),
                tf.where(found, code, tf.where(stop, -_ONE, marker)), steps + 1)

    position, marker, _ = tf.while_loop(
        lambda position, marker, steps: tf.equal(marker, 0) & (position + 4 <= size) & (steps < _JPEG_MAX_STEPS),
        body, (tf.constant(2, tf.int64), tf.constant(0, tf.int64), tf.constant(0, tf.int64)))
    return tf.maximum(marker, 0), byte(position + 4), byte(position + 5) * 256 + byte(position + 6)


def _jpeg_reason(image_bytes: tf.Tensor) -> tf.Tensor:
    """"" for a JPEG that libjpeg decodes (8-bit baseline, extended, progressive, arithmetic), else why not."""
    marker, precision, height = _jpeg_frame(image_bytes)
    hint = "; convert it to an 8-bit JPEG or PNG"
    return tf.case([
        (tf.equal(marker, 0), lambda: tf.constant("")),  # no frame header: libjpeg's verdict (corrupt) stands
        (_in(marker, _JPEG_LOSSLESS), lambda: tf.constant("unsupported JPEG: lossless coding; " + CONVERT_HINT)),
        (_in(marker, _JPEG_HIERARCHICAL), lambda: tf.constant("unsupported JPEG: hierarchical coding" + hint)),
        (tf.not_equal(precision, 8), lambda: _join("unsupported JPEG: ", precision, " bits per sample", hint)),
        (tf.equal(height, 0), lambda: tf.constant(
            "unsupported JPEG: its height is given by a DNL marker after the image data; re-save it or "
            + CONVERT_HINT)),
    ], default=lambda: tf.constant(""), exclusive=False)


# ---- GIF -------------------------------------------------------------------------------------------------------

def _gif_structure(image_bytes: tf.Tensor):
    """Walks a GIF's blocks (GIF89a specification, sections 17-27) and returns a dict of int64 scalars:
    frames, frame_pixels (sum of width x height over every image descriptor: what giflib allocates, since TF
    decodes all frames even when only the first is used), left, top, width, height (first frame), screen_width,
    screen_height, transparency_at (offset of the packed-fields byte of the first frame's graphic control
    extension if its transparency flag is set, else -1) and complete (0 if the walk hit _GIF_MAX_STEPS)."""
    size, byte = _byte_reader(image_bytes)

    def word(at):
        return byte(at) + 256 * byte(at + 1)

    def table_size(flags):
        return tf.where(tf.bitwise.bitwise_and(flags, 0x80) > 0,
                        3 * tf.bitwise.left_shift(2 * _ONE, tf.bitwise.bitwise_and(flags, 7)), 0 * _ONE)

    # state: position, in_sub_blocks, frames, frame_pixels, first frame (left, top, width, height),
    # transparency_at, done, steps
    def body(position, in_data, frames, pixels, first, transparency_at, done, steps):
        code = byte(position)
        sub_block = tf.equal(in_data, 1)
        is_image = ~sub_block & tf.equal(code, 0x2C)
        is_extension = ~sub_block & tf.equal(code, 0x21)
        image_size = word(position + 5) * word(position + 7)
        is_control = is_extension & tf.equal(byte(position + 1), 0xF9) & tf.equal(frames, 0)
        transparent = is_control & (tf.bitwise.bitwise_and(byte(position + 3), 1) > 0)
        next_position = tf.where(
            sub_block, position + 1 + code,
            tf.where(is_image, position + 11 + table_size(byte(position + 9)), position + 2))
        first_frame = is_image & tf.equal(frames, 0)
        descriptor = tf.stack([word(position + 1), word(position + 3), word(position + 5), word(position + 7)])
        return (next_position,
                tf.cast(tf.where(sub_block, tf.not_equal(code, 0), is_image | is_extension), tf.int64),
                frames + tf.cast(is_image, tf.int64),
                pixels + tf.cast(is_image, tf.int64) * image_size,
                tf.where(first_frame, descriptor, first),
                tf.where(is_control, tf.where(transparent, position + 3, -_ONE), transparency_at),
                ~sub_block & ~is_image & ~is_extension,  # the trailer (0x3B) or anything unexpected ends the walk
                steps + 1)

    start = 13 + table_size(byte(10))
    state = tf.while_loop(
        lambda position, in_data, frames, pixels, first, transparency_at, done, steps:
            ~done & (position < size) & (steps < _GIF_MAX_STEPS),
        body, (start, tf.constant(0, tf.int64), tf.constant(0, tf.int64), tf.constant(0, tf.int64),
               tf.zeros([4], tf.int64), tf.constant(-1, tf.int64), tf.constant(False), tf.constant(0, tf.int64)))
    _, _, frames, pixels, first, transparency_at, _, steps = state
    return {"frames": frames, "frame_pixels": pixels, "left": first[0], "top": first[1], "width": first[2],
            "height": first[3], "screen_width": word(6), "screen_height": word(8),
            "transparency_at": transparency_at, "complete": tf.cast(steps < _GIF_MAX_STEPS, tf.int64)}


def _gif_reason(gif) -> tf.Tensor:
    """"" for a GIF whose first frame TF decodes as the picture, else why not."""
    covers = (tf.equal(gif["left"], 0) & tf.equal(gif["top"], 0) & (gif["width"] >= gif["screen_width"])
              & (gif["height"] >= gif["screen_height"]))
    return tf.case([
        (tf.equal(gif["complete"], 0), lambda: tf.constant(
            f"unsupported GIF: more than {_GIF_MAX_STEPS} data blocks; {CONVERT_HINT}")),
        (tf.equal(gif["frames"], 0), lambda: tf.constant("")),  # no frame: giflib's verdict (corrupt) stands
        (~covers, lambda: _join("unsupported GIF: its first frame (", gif["width"], " x ", gif["height"], " at ",
                                gif["left"], ",", gif["top"], ") does not cover its ", gif["screen_width"], " x ",
                                gif["screen_height"], " screen; ", CONVERT_HINT)),
    ], default=lambda: tf.constant(""), exclusive=False)


def _without_gif_transparency(image_bytes: tf.Tensor) -> tf.Tensor:
    """The GIF with its first frame's transparency flag cleared, so TF's decoder gives transparent pixels their
    palette colour instead of black (as alpha is dropped for PNG)."""
    at = _gif_structure(image_bytes)["transparency_at"]

    def cleared():
        flags = tf.bitwise.bitwise_and(_header_uint(image_bytes, at, 1, False), 0xFE)
        return tf.strings.join([_substr(image_bytes, 0, at), tf.gather(_SINGLE_BYTES, flags),
                                _substr(image_bytes, at + 1, -1)])

    return tf.cond(at >= 0, cleared, lambda: image_bytes)


# ---- shared verdicts -------------------------------------------------------------------------------------------

@_plain_graph
def header_dimensions(image_bytes: tf.Tensor) -> tf.Tensor:
    """(height, width) int64 of the image the decoder produces, read from one encoded image's header without
    decoding pixels: JPEG frame header (libjpeg's own reading), PNG IHDR, BMP info header, GIF first frame's image
    descriptor. (0, 0) when the format is not decoded. Raises InvalidArgumentError on a JPEG whose header is
    corrupt or unsupported."""
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    fmt = image_format(image_bytes)
    return tf.case([(tf.equal(fmt, name), lambda reader=reader: reader(image_bytes))
                    for name, reader in _DIMENSION_READERS.items()],
                   default=lambda: tf.zeros([2], tf.int64), exclusive=False)


def _gif_dimensions(image_bytes: tf.Tensor) -> tf.Tensor:
    structure = _gif_structure(image_bytes)
    return tf.stack([structure["height"], structure["width"]])


# format -> (height, width) int64 of the image its decoder produces, from the header only.
_DIMENSION_READERS = {
    "JPEG": lambda image_bytes: tf.cast(tf.image.extract_jpeg_shape(image_bytes)[:2], tf.int64),
    "PNG": lambda image_bytes: tf.stack([_header_uint(image_bytes, 20, 4, True),
                                         _header_uint(image_bytes, 16, 4, True)]),
    "GIF": _gif_dimensions,
    "BMP": lambda image_bytes: tf.stack([tf.abs(_bmp_fields(image_bytes)["height"]),
                                         _bmp_fields(image_bytes)["width"]]),
}


def too_large_message(height, width, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    return tf.strings.format("image is {} x {} pixels, over the limit of {}; downscale it",
                             (width, height, max_pixels))


def _static_reasons(image_bytes: tf.Tensor) -> tf.Tensor:
    """Per image, why it cannot be decoded whatever its content ("" for the decoded formats)."""
    fmt = image_format(image_bytes)
    decoded = tf.reduce_any(tf.stack([tf.equal(fmt, name) for name in _DECODED_FORMATS]), axis=0)
    return tf.where(
        tf.equal(tf.strings.length(image_bytes), 0), "empty input (0 bytes)",
        tf.where(tf.equal(fmt, ""), f"not an image: content is none of {SUPPORTED_FORMATS}",
                 tf.where(decoded, "", tf.strings.join(
                     ["unsupported format ", fmt, f": convert it to one of {SUPPORTED_FORMATS}"]))))


@_plain_graph
def corrupt_reasons(image_bytes: tf.Tensor) -> tf.Tensor:
    """Per image, the reason for a file that failed to decode although its header was accepted (or could not be
    read): "corrupt or truncated <format>: it cannot be decoded", or the format-level reason."""
    static = _static_reasons(image_bytes)
    return tf.where(tf.equal(static, ""), tf.strings.join(
        ["corrupt or truncated ", image_format(image_bytes), ": it cannot be decoded"]), static)


@_plain_graph
def header_verdict(image_bytes: tf.Tensor, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """For one encoded image, "" if its header allows decoding it right within `max_pixels`, else the reason
    (empty, not an image, unsupported format or variant, or over the pixel limit), as a scalar string. Nothing is
    decoded. Raises InvalidArgumentError on a JPEG whose frame header libjpeg cannot read."""
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    fmt = image_format(image_bytes)
    static = _static_reasons(image_bytes)

    def gif():
        structure = _gif_structure(image_bytes)
        reason = _gif_reason(structure)
        frame_pixels = structure["frame_pixels"]
        return tf.case([
            (tf.not_equal(reason, ""), lambda: reason),
            (structure["width"] * structure["height"] > max_pixels,
             lambda: too_large_message(structure["height"], structure["width"], max_pixels)),
            (frame_pixels > max_pixels, lambda: tf.strings.format(
                "GIF has {} frames of {} pixels in total (all are decoded), over the limit of {}; keep only its "
                "first frame (e.g. save frame 0 as PNG) or downscale it", (structure["frames"], frame_pixels,
                                                                           max_pixels))),
        ], default=lambda: tf.constant(""), exclusive=False)

    def within_limit(fmt_name):
        def verdict():
            dimensions = _DIMENSION_READERS[fmt_name](image_bytes)
            return tf.where(dimensions[0] * dimensions[1] > max_pixels,
                            too_large_message(dimensions[0], dimensions[1], max_pixels), "")
        return verdict

    def variant_then_size(fmt_name, reason_fn):
        def verdict():
            reason = reason_fn(image_bytes)
            return tf.cond(tf.equal(reason, ""), within_limit(fmt_name), lambda: reason)
        return verdict

    return tf.case([
        (tf.not_equal(static, ""), lambda: static),
        (tf.equal(fmt, "GIF"), gif),
        (tf.equal(fmt, "BMP"), variant_then_size("BMP", _bmp_reason)),
        (tf.equal(fmt, "JPEG"), variant_then_size("JPEG", _jpeg_reason)),
    ], default=within_limit("PNG"), exclusive=False)


@_plain_graph
def _single_image_error(image_bytes: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """header_verdict, then "" if `image_bytes` also decodes; raises if it does not."""
    verdict = header_verdict(image_bytes, max_pixels)

    def decodes():
        # The message depends on the decoded size so that the decode really runs (and fails if it must).
        return tf.where(tf.size(_decode(image_bytes)) >= 0, "", "undecodable")

    return tf.cond(tf.equal(verdict, ""), decodes, lambda: verdict)


def _screening_options() -> tf.data.Options:
    """image_errors' dataset is a dozen elements consumed once: rewriting its graph and tuning its buffers costs
    far more than it could save."""
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_optimization.inject_prefetch = False
    options.autotune.enabled = False
    options.experimental_warm_start = False
    return options


def image_errors(image_bytes: tf.Tensor, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Per image of a batch [n] of encoded images, "" if decode_rgb decodes it right within `max_pixels`, else
    why not (string [n]); the same text ExampleGen writes in its skip report.

    Each image is tried in a tf.data map whose failures are dropped (ignore_errors), so one bad image never
    fails the batch; the survivors' indices put the verdicts back in order. The map runs one image at a time.
    The dataset is built anew on every call, so its construction is a fixed cost of every serving request: with
    tf.data's default graph rewrites and autotuning (_screening_options) it was 4-5 s per call whatever the batch
    size, 0.6-0.8 s without them (measured on 28 px PNGs, 1 to 32 per call; the decoding itself is milliseconds).
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    count = tf.shape(image_bytes, out_type=tf.int64)[0]
    verdicts = (tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes))
                .map(lambda index, raw: (index, _single_image_error(raw, max_pixels)))
                .ignore_errors()
                .with_options(_screening_options()))
    return verdicts.reduce(corrupt_reasons(image_bytes), lambda errors, verdict: tf.tensor_scatter_nd_update(
        errors, [[verdict[0]]], [verdict[1]]))


@_plain_graph
def decode_rgb(image_bytes: tf.Tensor, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Decodes one encoded image to uint8 RGB [h, w, 3]; animated GIFs give their first frame.

    Raises InvalidArgumentError, before decoding any pixel, with header_verdict's reason if the image is refused
    (unsupported variant, over `max_pixels`), and when the data is corrupt or truncated.
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    verdict = header_verdict(image_bytes, max_pixels)
    with tf.control_dependencies([tf.debugging.Assert(tf.equal(verdict, ""), [verdict])]):
        return _decode(tf.identity(image_bytes))


def _decode(image_bytes: tf.Tensor) -> tf.Tensor:
    """decode_rgb without the header verdict (for callers that have checked it)."""
    fmt = image_format(image_bytes)
    image = tf.case([
        (tf.equal(fmt, "BMP"), lambda: _decode_bmp(image_bytes)),
        (tf.equal(fmt, "JPEG"), lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE")),
        (tf.equal(fmt, "GIF"), lambda: tf.io.decode_image(_without_gif_transparency(image_bytes), channels=3,
                                                          expand_animations=False, dtype=tf.uint8)),
    ], default=lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False, dtype=tf.uint8),
        exclusive=False)
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
    resize_method; aspect: one of ASPECT_POLICIES (the crop or the padding is applied to the uint8 image).
    Bicubic can overshoot [0, 255], so values are clipped. The uint8 image is resized as is (the resize kernel
    reads uint8 and writes float32, with the same result as casting first), so no full-size float32 copy of the
    image is made.
    """
    if aspect not in ASPECT_POLICIES:
        raise ValueError(f"aspect must be one of {ASPECT_POLICIES}, got {aspect!r}.")
    low, high = float(value_range[0]), float(value_range[1])
    if aspect == "crop":
        image = _centre_crop_to_aspect(image, size)
    if aspect == "pad":
        resized = tf.image.resize_with_pad(image, size[0], size[1], method=method, antialias=True)
    else:
        resized = tf.image.resize(image, size, method=method, antialias=True)
    scaled = tf.clip_by_value(tf.cast(resized, tf.float32), 0.0, 255.0) / 255.0
    return low + scaled * (high - low)


def decode_batch(image_bytes: tf.Tensor, size: Tuple[int, int], value_range: Sequence[float],
                 method: str = "bilinear", aspect: str = "squash", max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Encoded images string [batch] -> float32 [batch, height, width, 3] (see resize_and_scale).

    Images are decoded in parallel (tf.map_fn's 10 iterations) only while the whole batch holds at most
    `max_pixels` pixels by its headers; a larger batch is decoded one image at a time, so decoding never holds
    more than about one limit-sized image at once, whatever the batch size or TF's inter-op threads.
    """
    height, width = int(size[0]), int(size[1])
    value_range = tuple(float(v) for v in value_range)
    if tf.compat.v1.executing_eagerly_outside_functions():
        decode_one = _decode_one_function(height, width, value_range, method, aspect, max_pixels)
        pixels_of = _header_pixels_function()
    else:  # in a TF1 graph a shared tf.function would be traced again per graph and keep every graph alive
        def decode_one(raw):
            return _decode_one(raw, height, width, value_range, method, aspect, max_pixels)
        pixels_of = _header_pixels

    def decode_all(parallel_iterations):
        return tf.map_fn(decode_one, image_bytes, parallel_iterations=parallel_iterations,
                         fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))

    pixels = tf.map_fn(pixels_of, image_bytes, fn_output_signature=tf.int64)
    return tf.cond(tf.reduce_sum(pixels) <= max_pixels, lambda: decode_all(10), lambda: decode_all(1))


def _decode_one(raw: tf.Tensor, height: int, width: int, value_range: Tuple[float, float], method: str,
                aspect: str, max_pixels: int) -> tf.Tensor:
    """One encoded image, string [] -> float32 [height, width, 3] in value_range (decode_rgb, resize_and_scale)."""
    return resize_and_scale(decode_rgb(raw, max_pixels), (height, width), value_range, method, aspect)


def _header_pixels(raw: tf.Tensor) -> tf.Tensor:
    """One encoded image, string [] -> int64 []: its pixel count by its header (header_dimensions)."""
    return tf.reduce_prod(header_dimensions(raw))


# One encoded image's graph is large (every format's header checks: about 4,000 nodes). As a tf.function it is
# traced once per process and argument set when the outer graph is a TF2 one (TFT's default), and a graph that
# decodes a batch calls it instead of holding copies: TFT traces the preprocessing_fn about nine times per
# Transform run, and decode_batch has two branches.
@functools.lru_cache(maxsize=None)
def _decode_one_function(height: int, width: int, value_range: Tuple[float, float], method: str, aspect: str,
                         max_pixels: int):
    return tf.function(lambda raw: _decode_one(raw, height, width, value_range, method, aspect, max_pixels),
                       input_signature=[tf.TensorSpec([], tf.string)], autograph=False)


@functools.lru_cache(maxsize=None)
def _header_pixels_function():
    return tf.function(_header_pixels, input_signature=[tf.TensorSpec([], tf.string)], autograph=False)


# The eager check of one file's bytes, for ExampleGen's skip reason and the image modality (outside any graph):
# one call per file (header verdict, then the decode), 0.66 ms per 28 px PNG where a verdict call and a decode_rgb
# call, which reads the header again, took 1.4 ms (ExampleGen checks every file).
_image_error = tf.function(lambda raw: _single_image_error(raw, MAX_PIXELS),
                           input_signature=[tf.TensorSpec([], tf.string)], autograph=False)


def decode_failure_reason(raw: bytes) -> Optional[str]:
    """None if Transform will decode `raw` to the right pixels, else a short human-readable reason.

    The reason is the one the exported model's `serving_bytes` gives for the same bytes (image_ops.header_verdict,
    then corrupt_reasons if decoding fails); for a corrupt file the decoder's own detail is appended.
    Nothing is decoded when the header refuses the image (e.g. over image_ops.MAX_PIXELS).
    """
    if not raw:
        return "empty file (0 bytes)"
    try:
        return _image_error(raw).numpy().decode() or None
    except tf.errors.InvalidArgumentError as err:
        detail = tf_error_detail(err)
    return f"{corrupt_reasons(tf.constant([raw]))[0].numpy().decode()} ({detail})"


def tf_error_detail(err: tf.errors.OpError) -> str:
    """The failing op's own message ("Invalid PNG data, size 60"): TF's message without its '{{function_node
    ...}}' markers, the '[[{{node ...}}]]' trace of an op raised inside a nested graph function, and the
    '[Op:...]' suffix."""
    message = err.message.split("\n\t [[")[0].split(" [Op:")[0]
    return " ".join(re.sub(r"\{\{[^}]*\}\}", " ", message).split())
