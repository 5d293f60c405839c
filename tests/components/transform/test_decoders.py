"""Every image format variant decodes to its Pillow twin's pixels or is refused with its true reason (issue 13,
case 01 and its kind), the same reason in ingestion and serving; the pixel limit reads what is decoded (case 09).

The corpus is generated here with Pillow; variants Pillow cannot write (4-bit, 16-bit, RLE, OS/2 and
bit-field BMPs, 16-bit RGB and interlaced PNG, 12-bit/lossless JPEG headers, GIF frames off the screen) are
written byte by byte, and Pillow reads each valid one back, so a refusal is about support, not corruption.
"""
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from typing import Dict, NamedTuple, Optional

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hubtfx.components.example_gen import executor as executor_lib
from hubtfx.components.transform import image_ops

RNG = np.random.default_rng(13)
WIDTH, HEIGHT = 37, 23  # odd width: BMP rows need padding, 4-bit rows end in half a byte


class Variant(NamedTuple):
    data: bytes
    twin: Optional[np.ndarray]  # the RGB pixels a right decoder gives (Pillow's reading, or computed)
    refusal: str = ""  # expected start of the reason; "" = decodes to `twin`
    tolerance: int = 0  # max |pixel difference| allowed (16-bit samples are rounded to 8 bits)


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _picture(width=WIDTH, height=HEIGHT) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 7 % 256], axis=-1)
    pixels = (pixels + RNG.integers(0, 40, pixels.shape)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _palette_bright_to_dark(colours=256) -> Image.Image:
    """Case 01's kind of file: palette index 0 is the brightest colour, so index-as-grey is visibly wrong."""
    quantized = _picture().quantize(colors=colours)
    palette = np.array(quantized.getpalette()[: 3 * colours]).reshape(-1, 3)
    order = np.argsort(-(palette @ [0.299, 0.587, 0.114]))
    new_index = np.empty(len(order), dtype=np.uint8)
    new_index[order] = np.arange(len(order))
    remapped = Image.fromarray(new_index[np.asarray(quantized)], "P")
    remapped.putpalette(palette[order].astype(np.uint8).flatten().tolist())
    return remapped


# ---- BMP written byte by byte ----------------------------------------------------------------------------------

def _bmp(bits: int, rows, width: int, palette: bytes = b"", header_size: int = 40, compression: int = 0,
         masks: bytes = b"", top_down: bool = False, pixel_data: Optional[bytes] = None, colours_used: int = 0,
         trailing: bytes = b"") -> bytes:
    """A BMP from unpadded rows (top to bottom); `pixel_data` replaces them (compressed data)."""
    height = len(rows)
    if pixel_data is None:
        stride = (bits * width + 31) // 32 * 4
        ordered = rows if top_down else rows[::-1]
        pixel_data = b"".join(row + b"\0" * (stride - len(row)) for row in ordered)
    if header_size == 12:  # OS/2 1.x BITMAPCOREHEADER: 16-bit sizes
        info = struct.pack("<IHHHH", 12, width, height, 1, bits)
    else:
        info = struct.pack("<IiiHHIIiiII", header_size, width, -height if top_down else height, 1, bits,
                           compression, len(pixel_data), 2835, 2835, colours_used, 0)
        info = (info + masks).ljust(header_size, b"\0") if header_size > 40 else info + masks
    offset = 14 + len(info) + len(palette)
    return (b"BM" + struct.pack("<IHHI", offset + len(pixel_data) + len(trailing), 0, 0, offset) + info
            + palette + pixel_data + trailing)


def _bgr0(palette_rgb: np.ndarray) -> bytes:
    return b"".join(bytes([b, g, r, 0]) for r, g, b in palette_rgb)


def _pack(indices: np.ndarray, bits: int) -> list:
    per_byte = 8 // bits
    rows = []
    for row in indices:
        padded = np.concatenate([row, np.zeros(-len(row) % per_byte, dtype=row.dtype)]).reshape(-1, per_byte)
        rows.append(bytes((padded << (bits * np.arange(per_byte - 1, -1, -1))).sum(axis=1).astype(np.uint8)))
    return rows


def _rle(indices: np.ndarray, four_bit: bool) -> bytes:
    """RLE8 / RLE4 encoding (runs only), bottom-up rows, end-of-line and end-of-bitmap codes."""
    out = bytearray()
    for row in indices[::-1]:
        start = 0
        while start < len(row):
            end = start
            while end < len(row) and row[end] == row[start] and end - start < 255:
                end += 1
            value = int(row[start])
            out += bytes([end - start, value * 17 if four_bit else value])
            start = end
        out += b"\0\0"
    return bytes(out + b"\0\1")


def _bmp_variants() -> Dict[str, Variant]:
    picture = _picture()
    rgb = np.asarray(picture)
    palette16 = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    indices16 = RNG.integers(0, 16, (HEIGHT, WIDTH), dtype=np.uint8)
    palette20 = RNG.integers(0, 256, (20, 3), dtype=np.uint8)
    indices20 = RNG.integers(0, 20, (HEIGHT, WIDTH), dtype=np.uint8)
    bgr_rows = [bytes(row[:, ::-1].flatten()) for row in rgb]
    bgra_rows = [bytes(np.concatenate([row[:, ::-1], np.full((WIDTH, 1), 255, np.uint8)], 1).flatten()) for row in rgb]
    standard_masks = struct.pack("<IIII", 0xFF0000, 0xFF00, 0xFF, 0xFF000000)
    palette_image = _palette_bright_to_dark()
    palette_bmp = _save(palette_image, "BMP")
    rgb555 = [struct.pack(f"<{WIDTH}H", *((row[:, 0] >> 3).astype(int) << 10 | (row[:, 1] >> 3).astype(int) << 5
                                          | (row[:, 2] >> 3).astype(int))) for row in rgb]
    variants = {
        "bmp 1-bit": _save(picture.convert("1"), "BMP"),
        "bmp 4-bit": _bmp(4, _pack(indices16, 4), WIDTH, _bgr0(palette16)),
        "bmp 8-bit palette bright to dark (case 01)": palette_bmp,
        "bmp 8-bit grey": _save(picture.convert("L"), "BMP"),
        "bmp 8-bit with a 20-colour table": _bmp(8, [bytes(r) for r in indices20], WIDTH, _bgr0(palette20),
                                                 colours_used=20),
        "bmp 8-bit top-down": _bmp(8, [bytes(r) for r in indices20], WIDTH, _bgr0(palette20), colours_used=20,
                                   top_down=True),
        "bmp 24-bit": _save(picture, "BMP"),
        "bmp 24-bit top-down": _bmp(24, bgr_rows, WIDTH, top_down=True),
        "bmp 24-bit with trailing bytes": _bmp(24, bgr_rows, WIDTH, trailing=b"\0\0"),
        "bmp 24-bit V5 header": _bmp(24, bgr_rows, WIDTH, header_size=124),
        "bmp 32-bit": _save(picture.convert("RGBA"), "BMP"),
        "bmp 32-bit V4 bit fields BGRA": _bmp(32, bgra_rows, WIDTH, header_size=108, compression=3,
                                              masks=standard_masks),
    }
    decoded = {name: Variant(data, _pillow_rgb(data)) for name, data in variants.items()}

    hint = "; convert it to PNG"
    refused = {
        "bmp 16-bit": (_bmp(16, rgb555, WIDTH), "unsupported BMP: 16 bits per pixel" + hint),
        "bmp 32-bit RGBA bit fields": (_bmp(32, bgra_rows, WIDTH, header_size=108, compression=3,
                                            masks=struct.pack("<IIII", 0xFF, 0xFF00, 0xFF0000, 0xFF000000)),
                                       "unsupported BMP: 32-bit pixels with colour masks other than"),
        "bmp RLE8": (_bmp(8, [b""] * HEIGHT, WIDTH, _bgr0(palette20), compression=1, colours_used=20,
                          pixel_data=_rle(indices20, False)), "unsupported BMP: RLE-compressed" + hint),
        "bmp RLE4": (_bmp(4, [b""] * HEIGHT, WIDTH, _bgr0(palette16), compression=2,
                          pixel_data=_rle(indices16, True)), "unsupported BMP: RLE-compressed" + hint),
        "bmp OS/2 header": (_bmp(24, bgr_rows, WIDTH, header_size=12),
                            "unsupported BMP: 12-byte info header (OS/2 or unknown version)" + hint),
    }
    for name, (data, reason) in refused.items():
        decoded[name] = Variant(data, None, reason)
        assert _pillow_rgb(data).shape == (HEIGHT, WIDTH, 3), f"{name} is not a valid BMP for Pillow"
    decoded["bmp with an embedded PNG"] = Variant(
        _bmp(24, [b""] * HEIGHT, WIDTH, compression=5, pixel_data=_save(picture, "PNG")), None,
        "unsupported BMP: it holds an embedded JPEG or PNG")
    decoded["bmp truncated"] = Variant(_save(picture, "BMP")[:-100], None, "corrupt or truncated BMP")
    return decoded


# ---- PNG, GIF, JPEG, others ------------------------------------------------------------------------------------

def _png(pixels: np.ndarray, colour_type: int, bit_depth: int, interlaced: bool = False) -> bytes:
    """A PNG of `pixels` ([h, w, c], uint8 or big-endian uint16 values), filter 0, optionally Adam7."""
    def scanlines(block):
        dtype = ">u2" if bit_depth == 16 else np.uint8
        return b"".join(b"\0" + row.astype(dtype).tobytes() for row in block)

    if interlaced:  # PNG specification, section 8.2: the seven Adam7 passes
        passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
        raw = b"".join(scanlines(pixels[y0::dy, x0::dx]) for x0, y0, dx, dy in passes if pixels[y0::dy, x0::dx].size)
    else:
        raw = scanlines(pixels)

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], bit_depth, colour_type, 0, 0, int(interlaced))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _gif_descriptors(data: bytes) -> list:
    """Offsets of the image descriptors of a GIF (test-side walk, independent of image_ops)."""
    position, found = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0), []
    while data[position] != 0x3B:
        if data[position] == 0x2C:
            found.append(position)
            flags = data[position + 9]
            position += 11 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
        else:
            position += 2
        while data[position]:
            position += data[position] + 1
        position += 1
    return found


def _gif_with_screen(data: bytes, screen, frame_origin=(0, 0)) -> bytes:
    patched = bytearray(data)
    struct.pack_into("<HH", patched, 6, *screen)
    struct.pack_into("<HH", patched, _gif_descriptors(data)[0] + 1, *frame_origin)
    return bytes(patched)


def _jpeg_with_frame_header(data: bytes, marker: int = 0xC0, precision: int = 8, height: Optional[int] = None):
    patched = bytearray(data)
    at = patched.find(b"\xff\xc0")
    patched[at + 1], patched[at + 4] = marker, precision
    if height is not None:
        struct.pack_into(">H", patched, at + 5, height)
    return bytes(patched)


def _other_variants() -> Dict[str, Variant]:
    picture = _picture()
    rgb = np.asarray(picture)
    sixteen = (rgb.astype(np.uint32) * 257 + RNG.integers(0, 200, rgb.shape)).astype(np.uint16)
    palette = _palette_bright_to_dark(64)
    frames = [palette, _picture().rotate(90).convert("P")]
    jpeg = _save(picture, "JPEG", quality=90)
    cmyk = _save(picture.convert("CMYK"), "JPEG", quality=90)
    ycck = bytearray(cmyk)
    adobe = ycck.find(b"Adobe")
    ycck[adobe + 11] = 2  # APP14 transform flag: 2 = YCCK
    made = {
        "png rgb": _save(picture, "PNG"),
        "png rgba": _save(picture.convert("RGBA"), "PNG"),
        "png grey": _save(picture.convert("L"), "PNG"),
        "png grey + alpha": _save(picture.convert("LA"), "PNG"),
        "png 1-bit": _save(picture.convert("1"), "PNG"),
        "png 4-bit palette": _save(picture.quantize(16), "PNG", bits=4),
        "png palette + transparency": _save(palette, "PNG", transparency=0),
        "png interlaced (Adam7)": _png(rgb, 2, 8, interlaced=True),
        "png animated (APNG, first frame)": _save(frames[0].convert("RGB"), "PNG", save_all=True,
                                                  append_images=[frames[1].convert("RGB")]),
        "gif": _save(palette, "GIF"),
        "gif interlaced": _save(palette, "GIF", interlace=True),
        "gif with transparency": _save(palette, "GIF", transparency=0),
        "gif animated (first frame)": _save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "gif frame larger than its screen": _gif_with_screen(_save(palette, "GIF"), (10, 10)),
        "jpeg baseline 4:2:0": jpeg,
        "jpeg 4:4:4": _save(picture, "JPEG", quality=90, subsampling=0),
        "jpeg progressive": _save(picture, "JPEG", quality=90, progressive=True),
        "jpeg optimized huffman": _save(picture, "JPEG", quality=90, optimize=True),
        "jpeg grey": _save(picture.convert("L"), "JPEG", quality=90),
        "jpeg cmyk": cmyk,
        "jpeg ycck": bytes(ycck),
    }
    variants = {name: Variant(data, _pillow_rgb(data)) for name, data in made.items()}
    # Pillow opens a 16-bit grey PNG as 32-bit integers; a right decoder scales 0..65535 to 0..255.
    grey16 = sixteen[..., 0]
    variants["png 16-bit grey"] = Variant(_save(Image.fromarray(grey16), "PNG"),
                                          np.repeat(np.round(grey16 / 257)[..., None], 3, axis=2), tolerance=1)
    variants["png 16-bit rgb"] = Variant(_png(sixteen, 2, 16), np.round(sixteen / 257), tolerance=1)
    # TF decodes the GIF frame, not the screen: a frame that does not cover the screen would lose its layout.
    variants["gif first frame smaller than its screen"] = Variant(
        _gif_with_screen(_save(palette, "GIF"), (WIDTH + 10, HEIGHT + 6), (5, 3)), None,
        f"unsupported GIF: its first frame ({WIDTH} x {HEIGHT} at 5,3) does not cover its {WIDTH + 10} x "
        f"{HEIGHT + 6} screen; convert it to PNG")
    refused_jpegs = {
        "jpeg 12-bit": (_jpeg_with_frame_header(jpeg, precision=12), "unsupported JPEG: 12 bits per sample"),
        "jpeg lossless": (_jpeg_with_frame_header(jpeg, marker=0xC3), "unsupported JPEG: lossless coding"),
        "jpeg hierarchical": (_jpeg_with_frame_header(jpeg, marker=0xC5), "unsupported JPEG: hierarchical coding"),
        "jpeg height in a DNL marker": (_jpeg_with_frame_header(jpeg, height=0),
                                        "unsupported JPEG: its height is given by a DNL marker"),
    }
    variants.update({name: Variant(data, None, reason) for name, (data, reason) in refused_jpegs.items()})
    variants["jpeg truncated"] = Variant(jpeg[: len(jpeg) // 2], None, "corrupt or truncated JPEG")
    variants["png truncated"] = Variant(made["png rgb"][:-40], None, "corrupt or truncated PNG")
    variants["gif truncated"] = Variant(made["gif"][:30], None, "corrupt or truncated GIF")
    variants["webp"] = Variant(_save(picture, "WEBP"), None, "unsupported format WEBP: convert it to one of")
    variants["tiff"] = Variant(_save(picture, "TIFF"), None, "unsupported format TIFF: convert it to one of")
    variants["text"] = Variant(b"not a picture\n", None, "not an image: content is none of JPEG, PNG, GIF, BMP")
    return variants


VARIANTS = {**_bmp_variants(), **_other_variants()}
NAMES = sorted(VARIANTS)

# Traced once for the module, as in an exported model (eager calls would retrace per image).
_decode_rgb = tf.function(image_ops.decode_rgb, input_signature=[tf.TensorSpec([], tf.string)])
_header_dimensions = tf.function(image_ops.header_dimensions, input_signature=[tf.TensorSpec([], tf.string)])
_image_errors_within = tf.function(lambda raw, limit: image_ops.image_errors(raw, limit),
                                   input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int64)])


@pytest.fixture(scope="module")
def serving_errors() -> Dict[str, str]:
    """The serving check's verdict for every variant, all in one batch."""
    errors = _image_errors_within(tf.constant([VARIANTS[name].data for name in NAMES]), image_ops.MAX_PIXELS).numpy()
    return {name: error.decode() for name, error in zip(NAMES, errors)}


def test_the_case_01_file_is_what_it_claims():
    data = VARIANTS["bmp 8-bit palette bright to dark (case 01)"].data
    assert struct.unpack_from("<H", data, 28)[0] == 8
    indices = np.asarray(Image.open(io.BytesIO(data))).astype(float)
    luminance = VARIANTS["bmp 8-bit palette bright to dark (case 01)"].twin @ [0.299, 0.587, 0.114]
    assert np.abs(indices - luminance).mean() > 40  # index-as-grey would be far from the picture


@pytest.mark.parametrize("name", [n for n in NAMES if VARIANTS[n].twin is not None])
def test_each_decodable_variant_gives_its_twins_pixels(name, serving_errors):
    variant = VARIANTS[name]
    assert serving_errors[name] == "", serving_errors[name]
    decoded = _decode_rgb(variant.data).numpy().astype(int)
    assert decoded.shape == variant.twin.shape
    assert np.abs(decoded - variant.twin).max() <= variant.tolerance
    # The size the pixel limit reads is the size that is decoded.
    assert _header_dimensions(variant.data).numpy().tolist() == list(decoded.shape[:2])


@pytest.mark.parametrize("name", [n for n in NAMES if VARIANTS[n].twin is None])
def test_each_refused_variant_gets_its_true_reason_in_serving_and_ingestion(name, serving_errors):
    variant = VARIANTS[name]
    assert serving_errors[name].startswith(variant.refusal), serving_errors[name]
    ingestion = executor_lib.decode_failure_reason(variant.data)
    assert ingestion.startswith(serving_errors[name]), (ingestion, serving_errors[name])
    if not variant.refusal.startswith("corrupt"):
        assert "corrupt" not in ingestion
    else:  # the decoder's own words, without TF's graph trace: "corrupt or truncated PNG: ... (Invalid PNG data...)"
        detail = ingestion[len(serving_errors[name]):]
        assert detail.startswith(" (") and detail.endswith(")") and len(detail) > 6, ingestion
        assert not any(marker in detail for marker in ("[[", "]]", "{{", "[Op:")), ingestion
    with pytest.raises(tf.errors.InvalidArgumentError):  # decode_rgb itself never returns its pixels
        _decode_rgb(variant.data)


def test_ingestion_accepts_exactly_what_serving_accepts(serving_errors):
    for name in NAMES:
        reason = executor_lib.decode_failure_reason(VARIANTS[name].data)
        assert (reason is None) == (serving_errors[name] == ""), (name, reason)


# ---- the pixel limit reads what is decoded (case 09's kind) ----------------------------------------------------

def test_a_gif_is_limited_by_its_frames_not_by_its_screen():
    small_screen = VARIANTS["gif frame larger than its screen"].data
    assert _header_dimensions(small_screen).numpy().tolist() == [HEIGHT, WIDTH]  # the screen says 10 x 10
    limit = WIDTH * HEIGHT - 1
    errors = _image_errors_within(tf.constant([small_screen]), limit).numpy()
    assert errors[0].decode() == f"image is {WIDTH} x {HEIGHT} pixels, over the limit of {limit}; downscale it"


def test_every_frame_of_a_gif_counts_because_every_frame_is_decoded():
    frames = [Image.new("RGB", (60, 50), (50 * k, 255 - 50 * k, 0)) for k in range(5)]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], disposal=1)
    assert len(_gif_descriptors(data)) == 5
    errors = _image_errors_within(tf.constant([data]), 4 * 60 * 50).numpy()
    assert errors[0].decode().startswith(
        f"GIF has 5 frames of {5 * 60 * 50} pixels in total (all are decoded), over the limit of {4 * 60 * 50}")
    assert _image_errors_within(tf.constant([data]), 5 * 60 * 50).numpy()[0] == b""


def test_a_png_whose_ihdr_claims_more_than_its_data_is_refused_by_its_header():
    claims_big = bytearray(_png(np.zeros((4, 4, 3), np.uint8), 2, 8))
    struct.pack_into(">II", claims_big, 16, 3000, 2000)
    errors = _image_errors_within(tf.constant([bytes(claims_big)]), 1_000_000).numpy()
    assert errors[0].decode() == "image is 3000 x 2000 pixels, over the limit of 1000000; downscale it"
    errors = _image_errors_within(tf.constant([bytes(claims_big)]), image_ops.MAX_PIXELS).numpy()
    assert errors[0].decode().startswith("corrupt or truncated PNG")


def test_a_batch_over_the_limit_is_decoded_one_image_at_a_time_with_the_same_result():
    images = [_save(_picture(120, 90), "JPEG", quality=90), _save(_picture(90, 120), "PNG")]
    batch = tf.constant(images * 3)
    parallel = image_ops.decode_batch(batch, (16, 16), (0.0, 1.0))
    one_by_one = image_ops.decode_batch(batch, (16, 16), (0.0, 1.0), max_pixels=120 * 90 * 2)
    np.testing.assert_array_equal(parallel.numpy(), one_by_one.numpy())


_PEAK_SCRIPT = textwrap.dedent("""
    import io, resource, sys
    import numpy as np, tensorflow as tf
    from PIL import Image
    from hubtfx.components.transform import image_ops
    tf.config.threading.set_inter_op_parallelism_threads(16)  # as on a many-core server
    side, count = int(sys.argv[1]), int(sys.argv[2])
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=80)
    decode = tf.function(lambda raw: image_ops.decode_batch(raw, (32, 32), (0.0, 1.0), max_pixels=side * side),
                         input_signature=[tf.TensorSpec([None], tf.string)])
    decode(tf.constant([buffer.getvalue()]))  # trace and warm up on one image
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    decode(tf.constant([buffer.getvalue()] * count))
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""")


def _peak_growth_mb(side: int, count: int) -> int:
    result = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(side), str(count)], capture_output=True,
                            text=True, check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                                os.path.dirname(os.path.abspath(__file__))))))
    return int(result.stdout.split()[-1])


def test_peak_memory_of_a_batch_of_near_limit_images_stays_near_one_image():
    """Each 3000 x 3000 image is 27 MB as uint8; eight decoded at once would add ~200 MB."""
    one_image_mb = 27
    growth = _peak_growth_mb(3000, 8)
    assert growth < 3 * one_image_mb, growth
