"""Image-folder layout: where the class folders are and which files they hold (a listing, no decoding).

Both the ImageFolderExampleGen executor and the CLI use this module, the CLI to fail before any Beam job
starts, the executor to list the files it ingests. Layout::

    <input_base>/<class_name>/<file>                  (use_spans=False)
    <input_base>/span-<N>/<class_name>/<file>         (use_spans=True; the latest N, or the one range_config selects)

Top-level files (e.g. the LICENSE.txt of the public flower_photos archive), nested sub-folders inside a
class folder and hidden entries (names starting with '.') are not part of the dataset.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2, range_config_pb2

# Split patterns relative to input_base, in TFX's own {SPAN} syntax: the driver resolves {SPAN} (latest
# span, or the one range_config selects) and records it on the Examples artifact.
CLASS_FILES_GLOB = "*/*"
SPAN_FOLDER_PATTERN = "span-" + example_gen_utils.SPAN_SPEC
SPAN_SPLIT_PATTERN = SPAN_FOLDER_PATTERN + "/" + CLASS_FILES_GLOB

_EXPECTED_LAYOUT = "<input_base>/<class_name>/<image file>, one sub-folder per class (e.g. flowers/daisy/1.jpg)"
_EXPECTED_SPAN_LAYOUT = "<input_base>/span-<N>/<class_name>/<image file> (e.g. flowers/span-1/daisy/1.jpg)"


class DataLayoutError(ValueError):
    """The input folder does not have the image-folder layout; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Result of a layout scan.

    Attributes:
      input_base: the folder the user gave.
      root: the folder whose sub-folders are the classes (input_base, or its resolved span folder).
      span: the resolved span number, or None when spans are not used.
      files: class name -> sorted file names (not paths) in that class folder.
    """

    input_base: str
    root: str
    span: Optional[int]
    # Not in the repr: TFX logs exec_properties, and a dataset can have thousands of files.
    files: Dict[str, List[str]] = dataclasses.field(repr=False)

    @property
    def class_names(self) -> List[str]:
        """Class names, sorted: the default class-id order."""
        return sorted(self.files)

    @property
    def file_counts(self) -> Dict[str, int]:
        return {name: len(self.files[name]) for name in self.class_names}

    @property
    def num_files(self) -> int:
        return sum(len(names) for names in self.files.values())

    def relative_paths(self) -> List[Tuple[str, str]]:
        """(path relative to root, e.g. 'daisy/1.jpg', class name) for every file, sorted by path."""
        return [(f"{name}/{file_name}", name) for name in self.class_names for file_name in self.files[name]]


def split_pattern(use_spans: bool) -> str:
    """The input split pattern (relative to input_base) the ExampleGen driver resolves."""
    return SPAN_SPLIT_PATTERN if use_spans else CLASS_FILES_GLOB


def class_root_for_pattern(input_base: str, resolved_pattern: str) -> str:
    """The class-folder root of a driver-resolved split pattern ('span-3/*/*' -> <input_base>/span-3)."""
    if not resolved_pattern.endswith(CLASS_FILES_GLOB):
        raise ValueError(f"split pattern {resolved_pattern!r} does not end with {CLASS_FILES_GLOB!r}")
    prefix = resolved_pattern[: -len(CLASS_FILES_GLOB)].rstrip("/")
    return os.path.join(input_base, prefix) if prefix else input_base


def resolve_span(
    input_base: str, range_config: Optional[range_config_pb2.RangeConfig] = None
) -> Tuple[int, str]:
    """Resolves the span folder exactly as the ExampleGen driver will: returns (span, resolved pattern)."""
    split = example_gen_pb2.Input.Split(name="single_split", pattern=SPAN_SPLIT_PATTERN)
    try:
        _, span, _ = example_gen_utils.calculate_splits_fingerprint_span_and_version(
            input_base, [split], range_config
        )
    except ValueError as err:
        raise span_resolution_error(input_base, err) from err
    return span, split.pattern  # TFX rewrote split.pattern with the span it picked.


def span_resolution_error(input_base: str, cause: Exception) -> DataLayoutError:
    """The error to raise when TFX finds no span folder to ingest."""
    return DataLayoutError(
        f"no span folder with class folders found under {input_base!r} ({cause}). With use_spans the "
        f"layout must be {_EXPECTED_SPAN_LAYOUT}, N an integer; when range_config selects a span, that "
        "span-<N> folder must exist. Add such a folder, or run without use_spans."
    )


def scan_layout(
    input_base: str,
    use_spans: bool = False,
    range_config: Optional[range_config_pb2.RangeConfig] = None,
) -> Layout:
    """Lists the class folders and their files (no decoding), failing on a layout that cannot be trained.

    With use_spans the span folder is resolved by TFX's {SPAN} mechanism (latest span unless
    range_config selects one), so the result matches what the pipeline will ingest.

    Raises:
      DataLayoutError: missing or empty input_base, no class folders, a single class, or a class folder
        without files.
    """
    if not tf.io.gfile.isdir(input_base):
        raise DataLayoutError(
            f"input_base {input_base!r} does not exist or is not a folder: point it at the folder laid out "
            f"as {_EXPECTED_SPAN_LAYOUT if use_spans else _EXPECTED_LAYOUT}."
        )
    if use_spans:
        span, resolved = resolve_span(input_base, range_config)
        return scan_class_root(input_base, class_root_for_pattern(input_base, resolved), span)
    return scan_class_root(input_base, input_base, None)


def scan_class_root(input_base: str, root: str, span: Optional[int]) -> Layout:
    """Lists `root`, whose sub-folders are the classes, and validates the result (see scan_layout)."""
    class_dirs, top_level_files = _list_visible_entries(root)
    if not class_dirs and not top_level_files:
        raise DataLayoutError(f"{root!r} is empty: expected {_EXPECTED_LAYOUT}. Copy the images there.")
    if not class_dirs:
        examples = ", ".join(repr(name) for name in top_level_files[:3])
        raise DataLayoutError(
            f"{root!r} has no class folders, only {len(top_level_files)} top-level file(s) (e.g. {examples}): "
            f"files directly in the root are ignored. Move the images of each class into its own sub-folder, "
            f"i.e. {_EXPECTED_LAYOUT}."
        )
    if len(class_dirs) == 1:
        raise DataLayoutError(
            f"{root!r} has a single class folder {class_dirs[0]!r}: classification needs at least two "
            "classes. Add one sub-folder of images per class."
        )
    files = {name: _list_files(os.path.join(root, name)) for name in class_dirs}
    empty = [name for name in class_dirs if not files[name]]
    if empty:
        raise DataLayoutError(
            f"class folder(s) {empty} under {root!r} contain no files (hidden files and nested folders "
            "do not count): add images to them or delete the folder(s)."
        )
    return Layout(input_base=input_base, root=root, span=span, files=files)


def _is_local(path: str) -> bool:
    return "://" not in path


def _entry_names(folder: str) -> List[str]:
    """Every entry name of `folder`, hidden ones included; fails on names that are not UTF-8."""
    if not _is_local(folder):
        # Object stores (gs://) mark folders with a trailing '/'.
        return [entry.rstrip("/") for entry in tf.io.gfile.listdir(folder)]
    # os.listdir, unlike gfile, survives a name that is not UTF-8, so the error can name it.
    names = os.listdir(folder)
    undecodable = [name.encode("utf-8", "surrogateescape") for name in names if not _is_utf8(name)]
    if undecodable:
        # TFX's ExampleGen driver globs the data root with gfile, which raises on such names: refuse them here.
        raise DataLayoutError(
            f"{folder!r} has entries whose names are not UTF-8: {undecodable}. Rename them to UTF-8 (e.g. "
            f"`convmv -f latin1 -t utf8 -r --notest {folder}`) or move them out of the data root."
        )
    return names


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # os.listdir decodes bytes that are not UTF-8 to lone surrogates
        return False


def _is_dir(path: str) -> bool:
    return os.path.isdir(path) if _is_local(path) else tf.io.gfile.isdir(path)


def _list_visible_entries(folder: str) -> Tuple[List[str], List[str]]:
    """(sorted sub-folder names, sorted file names) of `folder`, hidden entries left out."""
    dirs, files = [], []
    for name in _entry_names(folder):
        if not name or name.startswith("."):
            continue
        (dirs if _is_dir(os.path.join(folder, name)) else files).append(name)
    return sorted(dirs), sorted(files)


def _list_files(folder: str) -> List[str]:
    """Sorted names of the visible files directly in `folder`."""
    return _list_visible_entries(folder)[1]
