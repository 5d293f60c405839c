"""Deterministic generator of a small image-classification dataset (shapes in clutter).

The dataset stands in for real photos in tests, demos and the transfer-learning comparison, so it is built
to need *shape* features: every image has a randomly coloured object (circle, square, triangle, star or
cross) at a random scale, rotation and position, on a textured background of random colours, with
distractor clutter and pixel noise. Colour statistics therefore carry no label information, while the
outline of the main object does -- the kind of cue a pretrained ImageNet backbone already encodes and a
small CNN has to learn from few examples.

Layout written (the common image-folder layout read by ImageFolderExampleGen)::

    <root>/<class_name>/<class_name>_0000.jpg|png              (spans=None)
    <root>/span-<k>/<class_name>/<class_name>_s<k>_0000.jpg    (spans=N, k = 1..N, new images per span)

Every image is drawn from its own random generator seeded by (seed, span, class, index), so the same
arguments always give byte-identical files regardless of which other images are generated.
"""
from __future__ import annotations

import io
import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross")

_JPEG_QUALITY = 90


def generate_dataset(
    root: str,
    images_per_class: int = 30,
    seed: int = 0,
    spans: Optional[int] = None,
    classes: Optional[Sequence[str]] = None,
    min_size: int = 96,
    max_size: int = 320,
    grayscale_fraction: float = 0.15,
    png_fraction: float = 0.4,
) -> Dict:
    """Writes the dataset under `root` and returns a summary of what was written.

    Args:
      root: output folder (created if missing; existing files with the same names are overwritten).
      images_per_class: images per class (per span when `spans` is set).
      seed: base seed; the same seed gives byte-identical files.
      spans: if set, write `span-1` .. `span-N` sub-folders, each with new images.
      classes: subset of CLASS_NAMES to draw (default: all five, in that order).
      min_size, max_size: range of the image width and height in pixels (drawn independently, so most
        images are not square).
      grayscale_fraction: expected fraction of single-channel ("L" mode) images.
      png_fraction: expected fraction of PNG files; the rest are JPEG.

    Returns:
      {"root", "classes", "spans", "num_images", "per_class": {name: n}, "formats": {"jpeg": n, "png": n},
       "grayscale": n, "files": [paths relative to root, sorted]}.
    """
    class_names = _validate_classes(classes)
    if images_per_class < 1:
        raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
    if not 16 <= min_size <= max_size:
        raise ValueError(f"need 16 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
    span_numbers: List[Optional[int]] = list(range(1, spans + 1)) if spans else [None]

    summary = {
        "root": root,
        "classes": list(class_names),
        "spans": spans,
        "num_images": 0,
        "per_class": {name: 0 for name in class_names},
        "formats": {"jpeg": 0, "png": 0},
        "grayscale": 0,
        "files": [],
    }
    for span in span_numbers:
        span_dir = os.path.join(root, f"span-{span}") if span is not None else root
        for class_index, class_name in enumerate(CLASS_NAMES):
            if class_name not in class_names:
                continue
            class_dir = os.path.join(span_dir, class_name)
            os.makedirs(class_dir, exist_ok=True)
            for index in range(images_per_class):
                # The class's index in CLASS_NAMES (not in `classes`) seeds the image, so choosing a
                # subset of classes does not change the images of the others.
                rng = np.random.default_rng([seed, span or 0, class_index, index])
                image = draw_image(class_name, rng, min_size, max_size, grayscale_fraction)
                fmt = "png" if rng.random() < png_fraction else "jpeg"
                stem = f"{class_name}_s{span}_{index:04d}" if span is not None else f"{class_name}_{index:04d}"
                file_name = f"{stem}.{'png' if fmt == 'png' else 'jpg'}"
                _write_bytes(os.path.join(class_dir, file_name), encode_image(image, fmt))

                summary["num_images"] += 1
                summary["per_class"][class_name] += 1
                summary["formats"][fmt] += 1
                summary["grayscale"] += image.mode == "L"
                summary["files"].append(os.path.relpath(os.path.join(class_dir, file_name), root))
    summary["files"].sort()
    return summary


def draw_image(
    class_name: str, rng: np.random.Generator, min_size: int, max_size: int, grayscale_fraction: float
) -> Image.Image:
    """Draws one image of `class_name`: textured background, clutter, the object, then noise."""
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    image = _textured_background(rng, width, height)
    draw = ImageDraw.Draw(image)
    _draw_clutter(draw, rng, width, height)
    _draw_object(draw, rng, class_name, width, height)
    if rng.random() < 0.3:
        # Soft edges on some images, so sharpness is not a cue either.
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.5))))
    image = _add_noise(image, rng)
    if rng.random() < grayscale_fraction:
        image = image.convert("L")
    return image


def encode_image(image: Image.Image, fmt: str) -> bytes:
    """Encodes to JPEG or PNG with fixed settings (and no metadata), so the bytes are reproducible."""
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _validate_classes(classes: Optional[Sequence[str]]) -> List[str]:
    """Returns the requested classes, failing on names the generator cannot draw."""
    if classes is None:
        return list(CLASS_NAMES)
    unknown = sorted(set(classes) - set(CLASS_NAMES))
    if unknown or not classes:
        raise ValueError(f"classes must be a non-empty subset of {list(CLASS_NAMES)}, got {list(classes)}")
    return list(classes)


def _random_colour(rng: np.random.Generator) -> tuple:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _textured_background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A two-colour background: linear gradient, stripes or blotches, picked at random."""
    colour_a = np.array(_random_colour(rng), dtype=np.float32)
    colour_b = np.array(_random_colour(rng), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    projection = xx * math.cos(angle) + yy * math.sin(angle)
    kind = rng.integers(0, 3)
    if kind == 0:
        weight = (projection - projection.min()) / max(float(np.ptp(projection)), 1.0)
    elif kind == 1:
        period = rng.uniform(6, 30)
        weight = 0.5 + 0.5 * np.sin(projection * 2 * math.pi / period)
    else:
        coarse = rng.random((int(rng.integers(3, 8)), int(rng.integers(3, 8))))
        weight = np.asarray(
            Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC),
            dtype=np.float32,
        ) / 255.0
    pixels = colour_a * (1 - weight[..., None]) + colour_b * weight[..., None]
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def _draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> None:
    """Lines, dots and small blobs in random colours: edges that are not the object's outline."""
    short_side = min(width, height)
    for _ in range(int(rng.integers(3, 10))):
        colour = _random_colour(rng)
        kind = rng.integers(0, 3)
        x, y = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        if kind == 0:
            length = rng.uniform(0.1, 0.6) * short_side
            angle = rng.uniform(0, 2 * math.pi)
            end = (x + length * math.cos(angle), y + length * math.sin(angle))
            draw.line([(x, y), end], fill=colour, width=int(rng.integers(1, 4)))
        elif kind == 1:
            radius = rng.uniform(0.01, 0.03) * short_side + 1
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
        else:
            rx, ry = rng.uniform(0.03, 0.1, size=2) * short_side + 2
            draw.ellipse([x - rx, y - ry, x + rx, y + ry], outline=colour, width=1)


def _draw_object(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, class_name: str, width: int, height: int
) -> None:
    """Draws the labelled object, filled or as a thick outline, at random scale, rotation and position."""
    short_side = min(width, height)
    radius = rng.uniform(0.18, 0.4) * short_side
    cx = rng.uniform(radius, width - radius)
    cy = rng.uniform(radius, height - radius)
    rotation = rng.uniform(0, 2 * math.pi)
    colour = _random_colour(rng)
    filled = rng.random() < 0.6
    outline_width = max(2, int(radius * rng.uniform(0.08, 0.18)))
    if class_name == "circle":
        box = [cx - radius, cy - radius, cx + radius, cy + radius]
        if filled:
            draw.ellipse(box, fill=colour)
        else:
            draw.ellipse(box, outline=colour, width=outline_width)
        return
    points = _object_polygon(class_name, radius)
    rotated = [
        (cx + x * math.cos(rotation) - y * math.sin(rotation), cy + x * math.sin(rotation) + y * math.cos(rotation))
        for x, y in points
    ]
    if filled:
        draw.polygon(rotated, fill=colour)
    else:
        draw.line(rotated + rotated[:1], fill=colour, width=outline_width, joint="curve")


def _object_polygon(class_name: str, radius: float) -> List[tuple]:
    """Vertices of the object centred on the origin, fitting in a circle of `radius`."""
    if class_name == "square":
        half = radius / math.sqrt(2)
        return [(-half, -half), (half, -half), (half, half), (-half, half)]
    if class_name == "triangle":
        return [_polar(radius, -math.pi / 2 + k * 2 * math.pi / 3) for k in range(3)]
    if class_name == "star":
        return [_polar(radius if k % 2 == 0 else radius * 0.42, -math.pi / 2 + k * math.pi / 5) for k in range(10)]
    if class_name == "cross":
        arm, half = radius * 0.95, radius * 0.3
        return [
            (-half, -arm), (half, -arm), (half, -half), (arm, -half), (arm, half), (half, half),
            (half, arm), (-half, arm), (-half, half), (-arm, half), (-arm, -half), (-half, -half),
        ]
    raise ValueError(f"unknown class {class_name!r}; expected one of {list(CLASS_NAMES)}")


def _polar(radius: float, angle: float) -> tuple:
    return (radius * math.cos(angle), radius * math.sin(angle))


def _add_noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Gaussian pixel noise of random strength (sensor-like; also defeats exact-colour shortcuts)."""
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.normal(0, rng.uniform(3, 15), size=pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), image.mode)


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
