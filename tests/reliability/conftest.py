"""The bad-input corpus: an image-folder data root where every awkward case sits beside good images.

`Corpus.cases` maps each file ExampleGen should see (path relative to the data root) to its expected outcome in
training (`ingest`: "" = used, else the start of the skip reason) and in serving (`serve`: "" = scored, else
the start of the `error` output). `Corpus.ignored` lists entries the layout rules leave out of the dataset.
"""
import dataclasses
import io
import os
import struct
import zlib
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image

from hubtfx.pipeline.datasets.sample_data import generate_dataset

LARGE_SIDE = 12000  # 144 megapixels: decoded as float32 RGB it would take 1.7 GB


@dataclasses.dataclass(frozen=True)
class Outcome:
    ingest: str
    serve: str


USED = Outcome("", "")


@dataclasses.dataclass
class Corpus:
    root: str
    cases: Dict[str, Outcome]
    ignored: List[str]

    def read(self, relative_path: str) -> bytes:
        with open(os.path.join(self.root, relative_path), "rb") as handle:
            return handle.read()


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


def large_png(width: int, height: int) -> bytes:
    """A valid, fully decodable black grayscale PNG, built row by row so it never exists unpacked in memory."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def exif_rotated_jpeg() -> bytes:
    """A 80x40 (landscape) JPEG, left half red and right half blue, whose EXIF orientation 6 asks viewers to
    show it rotated by 90 degrees, as portrait."""
    image = Image.new("RGB", (80, 40), (255, 0, 0))
    image.paste((0, 0, 255), (40, 0, 80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def bad_huffman_jpeg() -> bytes:
    """A JPEG whose Huffman table (DHT segment) is overwritten with garbage."""
    data = bytearray(encode(noise(64, 48, seed=4), "JPEG", quality=90))
    table = data.find(b"\xff\xc4")
    data[table + 5:table + 25] = b"\xff" * 20
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 24), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (24, 24), 1)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    return encode(image, "PNG", transparency=0)


def sixteen_bit_png() -> bytes:
    return encode(Image.fromarray(np.full((24, 24), 40000, dtype=np.uint16)), "PNG")


def palette_bmp_and_twin():
    """Issue 13 case 01: an 8-bit palette BMP whose palette runs from bright to dark (index-as-grey decoding
    would show an inverted grey picture), and the PNG of the same RGB pixels."""
    quantized = noise(40, 30, seed=8).quantize(colors=256)
    palette = np.array(quantized.getpalette()).reshape(-1, 3)
    order = np.argsort(-(palette @ [0.299, 0.587, 0.114]))
    new_index = np.empty(len(order), dtype=np.uint8)
    new_index[order] = np.arange(len(order))
    paletted = Image.fromarray(new_index[np.asarray(quantized)], "P")
    paletted.putpalette(palette[order].astype(np.uint8).flatten().tolist())
    return encode(paletted, "BMP"), encode(paletted.convert("RGB"), "PNG")


def rle8_bmp() -> bytes:
    """A valid RLE8-compressed 4x2 BMP (Pillow reads it; TF's decoder does not support compression)."""
    pixel_data = b"\x04\x01\x00\x00" b"\x04\x00\x00\x00" b"\x00\x01"
    info = struct.pack("<IiiHHIIiiII", 40, 4, 2, 1, 8, 1, len(pixel_data), 0, 0, 2, 0)
    offset = 14 + 40 + 8
    return (b"BM" + struct.pack("<IHHI", offset + len(pixel_data), 0, 0, offset) + info
            + b"\x00\x00\xff\x00\xff\x00\x00\x00" + pixel_data)


def twelve_bit_jpeg() -> bytes:
    data = bytearray(encode(noise(32, 24, seed=9), "JPEG"))
    data[data.find(b"\xff\xc0") + 4] = 12  # sample precision
    return bytes(data)


# relative path -> (bytes, expected outcome). The good images of generate_dataset are added as USED.
def _file_cases() -> Dict[str, tuple]:
    jpeg = encode(noise(64, 48, seed=5), "JPEG", quality=90)
    palette_bmp, palette_twin = palette_bmp_and_twin()
    rle_reason = "unsupported BMP: RLE-compressed; convert it to PNG"
    twelve_bit_reason = "unsupported JPEG: 12 bits per sample; convert it to an 8-bit JPEG or PNG"
    return {
        "circle/palette.bmp": (palette_bmp, USED),
        "circle/palette twin.png": (palette_twin, USED),
        "circle/rle.bmp": (rle8_bmp(), Outcome(rle_reason, rle_reason)),
        "square/twelve-bit.jpg": (twelve_bit_jpeg(), Outcome(twelve_bit_reason, twelve_bit_reason)),
        "circle/zero.jpg": (b"", Outcome("empty file (0 bytes)", "empty input (0 bytes)")),
        "circle/truncated.jpg": (jpeg[:len(jpeg) // 2], Outcome("corrupt or truncated JPEG", "corrupt or truncated")),
        "circle/bad huffman.jpg": (bad_huffman_jpeg(), Outcome("corrupt or truncated JPEG", "corrupt or truncated")),
        "circle/text.jpg": (b"this is not a picture\n", Outcome("not an image", "not an image")),
        "circle/cmyk.jpg": (encode(noise(32, 32).convert("CMYK"), "JPEG"), USED),
        "circle/sixteen-bit.png": (sixteen_bit_png(), USED),
        "square/palette transparent.png": (palette_png_with_transparency(), USED),
        "square/animated.gif": (animated_gif(), USED),
        "square/huge.png": (large_png(LARGE_SIDE, LARGE_SIDE), Outcome(
            f"image is {LARGE_SIDE} x {LARGE_SIDE} pixels, over the limit",
            f"image is {LARGE_SIDE} x {LARGE_SIDE} pixels, over the limit")),
        "square/one pixel.png": (encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), USED),
        "square/exif-rotated.jpg": (exif_rotated_jpeg(), USED),
        "two words/été à l'ombre.jpg": (jpeg, USED),
        "two words/with space.png": (encode(noise(30, 20, seed=6), "PNG"), USED),
    }


def build_corpus(root: str, outside: str) -> Corpus:
    """Writes the corpus under `root`; `outside` is a folder beside it for link targets."""
    generate_dataset(root, classes=["circle", "square", "triangle"], images_per_class=3, min_size=24, max_size=40)
    os.rename(os.path.join(root, "triangle"), os.path.join(root, "two words"))
    cases = {f"{name}/{file}": USED for name in os.listdir(root) for file in os.listdir(os.path.join(root, name))}
    for relative_path, (data, outcome) in _file_cases().items():
        with open(os.path.join(root, relative_path), "wb") as handle:
            handle.write(data)
        cases[relative_path] = outcome

    os.makedirs(outside, exist_ok=True)
    secret = os.path.join(outside, "secret.png")
    with open(secret, "wb") as handle:
        handle.write(encode(noise(20, 20, seed=7), "PNG"))
    os.symlink(secret, os.path.join(root, "circle", "link-outside.png"))
    # `hubtfx predict` is a user tool and follows links; only ExampleGen confines reads to the data root.
    cases["circle/link-outside.png"] = Outcome("symbolic link to", "")
    os.symlink(os.path.join("..", "circle", "cmyk.jpg"), os.path.join(root, "square", "link-inside.jpg"))
    cases["square/link-inside.jpg"] = USED
    os.symlink(os.path.join(root, "missing.png"), os.path.join(root, "square", "dangling.png"))
    cases["square/dangling.png"] = Outcome("cannot read the file", "cannot read the file")

    ignored = ["circle/.hidden.jpg", ".hidden-folder/a.jpg", "circle/nested/deep.jpg", "LICENSE.txt"]
    for relative_path in ignored:
        os.makedirs(os.path.dirname(os.path.join(root, relative_path)), exist_ok=True)
        with open(os.path.join(root, relative_path), "wb") as handle:
            handle.write(encode(noise(20, 20), "PNG"))
    return Corpus(root=root, cases=cases, ignored=ignored)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Corpus:
    base = tmp_path_factory.mktemp("corpus")
    return build_corpus(str(base / "data root"), str(base / "outside"))
