"""Image-folder layout: where the class folders are and which files they hold (a listing, no decoding).

Both the ImageFolderExampleGen executor and the CLI use this module, the CLI to fail before any Beam job
starts, the executor to list the files it ingests. Layout::

    <input_base>/<class_name>/<file>                  (use_spans=False)
    <input_base>/span-<N>/<class_name>/<file>         (use_spans=True; the latest N, or the one range_config selects)

or, for texts, one table (a .csv or .tsv file with a header row; read by table.py), found by `scan_input`::

    <input_base>                                      (use_spans=False: the data root is the table itself)
    <input_base>/<table>.csv                          (use_spans=False: a folder without sub-folders, one table)
    <input_base>/span-<N>/<table>.csv                 (use_spans=True, span resolved as for class folders)

A folder with sub-folders is always read as class folders, so a table beside them is a top-level file and
ignored, as before tables were read.

Top-level files (e.g. the LICENSE.txt of the public flower_photos archive), nested sub-folders inside a
class folder and hidden entries (names starting with '.') are not part of the dataset. A class is named by its
folder in Unicode NFC; folders whose names are the same after normalisation are one class (class_names.py).

Folders are *listed*, never globbed: a data root, class folder or file name may hold '[', '*', '?', '{', '!'
(e.g. "photos [2024]"). TFX's own ExampleGen driver globs '<input_base>/span-*/*/*' to find the span and to
fingerprint the input, which reads such characters as patterns; ImageFolderInputProcessor replaces it.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
from typing import Dict, List, Optional, Tuple, Union

import tensorflow as tf
from tfx.components.example_gen import input_processor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2, range_config_pb2

from hubtfx.components.example_gen import class_names as class_names_lib

# Split patterns relative to input_base, in TFX's own {SPAN} syntax: the driver resolves {SPAN} (latest
# span, or the one range_config selects) and records it on the Examples artifact.
CLASS_FILES_GLOB = "*/*"
SPAN_FOLDER_PATTERN = "span-" + example_gen_utils.SPAN_SPEC
SPAN_SPLIT_PATTERN = SPAN_FOLDER_PATTERN + "/" + CLASS_FILES_GLOB
# A span folder as TFX's {SPAN} spec matches it (utils._create_matching_glob_and_regex: '(?P<span>\d+)').
_SPAN_FOLDER_NAME = re.compile(r"span-(\d+)")
# Marks a fingerprint computed by `input_fingerprint`, as opposed to one from TFX's own (globbing) driver.
FINGERPRINT_PREFIX = "image_folder:"

_EXPECTED_LAYOUT = ("<input_base>/<class_name>/<file>, one sub-folder per class (e.g. flowers/daisy/1.jpg, "
                    "reviews/pos/1.txt), or for texts one .csv/.tsv table")
_EXPECTED_SPAN_LAYOUT = "<input_base>/span-<N>/<class_name>/<file> (e.g. flowers/span-1/daisy/1.jpg)"
# A table's delimiter, from its file name's suffix (lower case).
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}


class DataLayoutError(ValueError):
    """The input folder does not have the image-folder layout; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Result of a layout scan.

    Attributes:
      input_base: the folder the user gave.
      root: the folder whose sub-folders are the classes (input_base, or its resolved span folder).
      span: the resolved span number, or None when spans are not used.
      files: class name -> sorted paths relative to root ('daisy/1.jpg'), from all of the class's folders.
      folders: class name -> the folder names under root that hold it (several when their names differ only
        in Unicode normalisation or surrounding white space; see class_names.py).
    """

    input_base: str
    root: str
    span: Optional[int]
    # Not in the repr: TFX logs exec_properties, and a dataset can have thousands of files.
    files: Dict[str, List[str]] = dataclasses.field(repr=False)
    folders: Dict[str, List[str]] = dataclasses.field(repr=False)

    @property
    def class_names(self) -> List[str]:
        """Class names, sorted: the default class-id order."""
        return sorted(self.files)

    @property
    def file_counts(self) -> Dict[str, int]:
        return {name: len(self.files[name]) for name in self.class_names}

    @property
    def num_files(self) -> int:
        return sum(len(paths) for paths in self.files.values())

    def relative_paths(self) -> List[Tuple[str, str]]:
        """(path relative to root, e.g. 'daisy/1.jpg', class name) for every file, by class then path."""
        return [(path, name) for name in self.class_names for path in self.files[name]]

    def input_files(self) -> List[Tuple[str, str]]:
        """(path relative to root, full path) of every file read, in a fixed order: what the fingerprint covers."""
        return [(path, os.path.join(self.root, path)) for path, _ in self.relative_paths()]

    def name_notes(self) -> List[str]:
        """One line per class whose folder name(s) differ from its class name, for the user to see."""
        notes = []
        for name in self.class_names:
            folders = self.folders[name]
            if folders == [name]:
                continue
            spelled = " and ".join(class_names_lib.code_points(folder) for folder in folders)
            if len(folders) > 1:
                fix = "to keep one folder per class, move the files into one of them and delete the others"
            else:
                fix = f"{class_names_lib.convmv_hint(self.root)} renames it to that spelling"
            notes.append(
                f"class folder(s) {spelled} {'merged into one class' if len(folders) > 1 else 'read as class'} "
                f"{class_names_lib.code_points(name)}: the same name after Unicode NFC normalisation and trimming "
                f"white space; {fix}"
            )
        return notes


@dataclasses.dataclass(frozen=True)
class TableLayout:
    """Result of a scan that found a table of texts instead of class folders (classes are in its rows).

    Attributes:
      input_base: the folder or file the user gave.
      root: what the resolved split pattern points at: input_base, or its resolved span folder.
      span: the resolved span number, or None when spans are not used.
      path: the table file (root itself, or the one table in the root folder).
    """

    input_base: str
    root: str
    span: Optional[int]
    path: str

    @property
    def name(self) -> str:
        """The table's file name, e.g. 'reviews.csv'."""
        return os.path.basename(self.path)

    @property
    def num_files(self) -> int:
        return 1

    def input_files(self) -> List[Tuple[str, str]]:
        """[(file name, full path)] of the table: what the fingerprint covers."""
        return [(self.name, self.path)]


def is_table_name(name: str) -> bool:
    """Whether a file name has a table suffix (.csv, .tsv; any letter case)."""
    return os.path.splitext(name)[1].lower() in TABLE_DELIMITERS


def table_delimiter(path: str) -> str:
    """',' for a .csv, tab for a .tsv file.

    Raises:
      DataLayoutError: any other suffix.
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in TABLE_DELIMITERS:
        raise DataLayoutError(
            f"{path!r} is a file but not a table: a data root that is a file must be a .csv (comma-separated) or "
            ".tsv (tab-separated) table of texts with a header row; otherwise point it at the folder that holds "
            "one sub-folder per class."
        )
    return TABLE_DELIMITERS[suffix]


def split_pattern(use_spans: bool) -> str:
    """The input split pattern (relative to input_base) the ExampleGen driver resolves."""
    return SPAN_SPLIT_PATTERN if use_spans else CLASS_FILES_GLOB


def class_root_for_pattern(input_base: str, resolved_pattern: str) -> str:
    """The class-folder root of a driver-resolved split pattern ('span-3/*/*' -> <input_base>/span-3)."""
    if not resolved_pattern.endswith(CLASS_FILES_GLOB):
        raise ValueError(f"split pattern {resolved_pattern!r} does not end with {CLASS_FILES_GLOB!r}")
    prefix = resolved_pattern[: -len(CLASS_FILES_GLOB)].rstrip("/")
    return os.path.join(input_base, prefix) if prefix else input_base


def glob_characters(path: str) -> List[str]:
    """The characters of `path` that glob and fnmatch read as a pattern ('*', '?', '['; stdlib glob.escape's
    definition: ']', '{', '}', '!' only matter after a '['), sorted; [] if none."""
    return sorted({char for char in path if glob.escape(char) != char})


def resolve_span(
    input_base: str, range_config: Optional[range_config_pb2.RangeConfig] = None
) -> Tuple[int, str]:
    """The span folder the pipeline ingests: (span, resolved split pattern, e.g. 'span-3/*/*').

    TFX's semantics, found by listing rather than by TFX's glob: the highest-numbered `span-<N>` folder that
    holds a file in a class folder, or the span a static range_config names.

    Raises:
      DataLayoutError: no such span folder, or two folders with the same span number ('span-1', 'span-01').
      ValueError: a range_config TFX's ExampleGen does not support (TFX's own check and message).
    """
    split = example_gen_pb2.Input.Split(name="single_split", pattern=SPAN_SPLIT_PATTERN)
    input_processor.FileBasedInputProcessor(input_base, [split], range_config)  # validates range_config only
    _require_folder(input_base, use_spans=True)
    folders: Dict[int, List[str]] = {}
    for name in _entry_names(input_base):
        match = _SPAN_FOLDER_NAME.fullmatch(name)
        if match and _is_dir(os.path.join(input_base, name)):
            folders.setdefault(int(match.group(1)), []).append(name)
    static = range_config is not None and range_config.HasField("static_range")
    if static:
        wanted = range_config.static_range.start_span_number
        if wanted not in folders:
            raise span_resolution_error(input_base, f"range_config selects span {wanted}: no span-{wanted} folder")
        candidates = [wanted]
    else:
        candidates = sorted(folders, reverse=True)
    for span in candidates:
        if len(folders[span]) > 1:
            raise DataLayoutError(
                f"folders {sorted(folders[span])} under {input_base!r} both number span {span}: keep one of them."
            )
        folder = folders[span][0]
        # The latest span skips folders without files, as TFX's glob does (e.g. one still being created).
        if static or _holds_data(os.path.join(input_base, folder)):
            return span, f"{folder}/{CLASS_FILES_GLOB}"
    raise span_resolution_error(input_base, "no span-<N> folder holds a file in a class folder, or a table")


def span_resolution_error(input_base: str, cause: str) -> DataLayoutError:
    """The error to raise when there is no span folder to ingest."""
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

    With use_spans the span folder is resolved as TFX's {SPAN} mechanism would (latest span unless
    range_config selects one), so the result matches what the pipeline will ingest.

    Raises:
      DataLayoutError: missing or empty input_base, no class folders, a single class, a class folder without
        files, or class names that cannot be told apart (class_names.py).
    """
    _require_folder(input_base, use_spans)
    span, resolved = resolve_span(input_base, range_config) if use_spans else (None, CLASS_FILES_GLOB)
    return scan_class_root(input_base, class_root_for_pattern(input_base, resolved), span)


def scan_class_root(input_base: str, root: str, span: Optional[int]) -> Layout:
    """Lists `root`, whose sub-folders are the classes, and validates the result (see scan_layout)."""
    class_dirs, top_level_files = _list_visible_entries(root)
    if not class_dirs and not top_level_files:
        raise DataLayoutError(f"{root!r} is empty: expected {_EXPECTED_LAYOUT}. Copy the data there.")
    if not class_dirs:
        examples = ", ".join(repr(name) for name in top_level_files[:3])
        raise DataLayoutError(
            f"{root!r} has no class folders, only {len(top_level_files)} top-level file(s) (e.g. {examples}): "
            f"files directly in the root are ignored. Move the files of each class into its own sub-folder, "
            f"i.e. {_EXPECTED_LAYOUT}."
        )
    try:
        folders = class_names_lib.group_folders(class_dirs)
    except class_names_lib.ClassNameError as err:
        raise DataLayoutError(f"{root!r}: {err}") from None
    if len(folders) == 1:
        spellings = f" (folders {class_dirs}, one name in different Unicode forms)" if len(class_dirs) > 1 else ""
        raise DataLayoutError(
            f"{root!r} has a single class folder {next(iter(folders))!r}{spellings}: classification needs at least "
            "two classes. Add one sub-folder of examples per class."
        )
    files = {
        name: sorted(
            f"{folder}/{file_name}" for folder in spellings for file_name in _list_files(os.path.join(root, folder))
        )
        for name, spellings in folders.items()
    }
    empty = sorted(folder for name in folders if not files[name] for folder in folders[name])
    if empty:
        raise DataLayoutError(
            f"class folder(s) {empty} under {root!r} contain no files (hidden files and nested folders "
            "do not count): add files to them or delete the folder(s)."
        )
    return Layout(input_base=input_base, root=root, span=span, files=files, folders=folders)


def scan_input(
    input_base: str,
    use_spans: bool = False,
    range_config: Optional[range_config_pb2.RangeConfig] = None,
) -> Union[Layout, TableLayout]:
    """`scan_layout`, or the table of texts when the data root (or its resolved span folder) is one.

    The ExampleGen driver and executor use this; `scan_layout` stays the class-folder scan.

    Raises:
      DataLayoutError: as scan_layout; a data root that is a file but not a .csv/.tsv table, or a folder (without
        sub-folders) holding several tables.
    """
    if not use_spans and _is_file(input_base):
        return scan_root(input_base, input_base, None)
    _require_folder(input_base, use_spans)
    span, resolved = resolve_span(input_base, range_config) if use_spans else (None, CLASS_FILES_GLOB)
    return scan_root(input_base, class_root_for_pattern(input_base, resolved), span)


def scan_root(input_base: str, root: str, span: Optional[int]) -> Union[Layout, TableLayout]:
    """The table at `root` (a table file, or a folder whose only data is one table) or else its class folders."""
    table = find_table(root)
    if table is not None:
        return TableLayout(input_base=input_base, root=root, span=span, path=table)
    return scan_class_root(input_base, root, span)


def find_table(root: str) -> Optional[str]:
    """The table file `root` is or holds, or None when `root` is a folder to read as class folders.

    A folder holds a table when it has no visible sub-folder and a visible .csv or .tsv file; other top-level
    files (a README, a LICENSE) are ignored, as they are beside class folders.

    Raises:
      DataLayoutError: `root` is a file but not a table, or a folder without sub-folders holding several tables.
    """
    if _is_file(root):
        table_delimiter(root)  # refuses other files
        return root
    if not _is_dir(root):
        return None  # scan_class_root says that it is missing
    folders, files = _list_visible_entries(root)
    tables = [name for name in files if is_table_name(name)]
    if folders or not tables:
        return None
    if len(tables) > 1:
        raise DataLayoutError(
            f"{root!r} holds several tables {tables}: keep exactly one .csv/.tsv table of texts there (with spans, "
            "one per span-<N> folder), or merge them into one."
        )
    return os.path.join(root, tables[0])


def input_fingerprint(layout: Union[Layout, TableLayout]) -> str:
    """The fingerprint of a layout's files, on which TFX decides whether ExampleGen's cached output is reused.

    Covers every file's path relative to the class root (a table: its file name), size and modification time
    (ns), so adding, removing, renaming or rewriting any file changes it. It replaces TFX's fingerprint
    (io_utils.generate_fingerprint: count, total size and whole-second mtimes of the files a glob matches), which
    sees no file at all when the data root holds '[...]'.

    Returns:
      "image_folder:num_files:<N>,total_bytes:<B>,sha256:<hex digest of the per-file lines>".
    """
    digest = hashlib.sha256()
    total_bytes = 0
    for path, full_path in layout.input_files():
        size, mtime_ns = _size_and_mtime(full_path)
        total_bytes += max(size, 0)
        digest.update(json.dumps([path, size, mtime_ns]).encode("utf-8") + b"\n")
    return f"{FINGERPRINT_PREFIX}num_files:{layout.num_files},total_bytes:{total_bytes},sha256:{digest.hexdigest()}"


def fingerprint_file_count(fingerprint: str) -> Optional[int]:
    """The file count a fingerprint (ours or TFX's 'split:..,num_files:N,...') records, or None."""
    match = re.search(r"\bnum_files:(\d+)", fingerprint or "")
    return int(match.group(1)) if match else None


class ImageFolderInputProcessor(input_processor.FileBasedInputProcessor):
    """TFX's FileBasedInputProcessor with span and fingerprint found by listing folders (`scan_input`).

    TFX's driver (driver.Driver.resolve_exec_properties) asks its input processor for the span, the
    fingerprint and the resolved split pattern; the base class gets all three from
    utils.calculate_splits_fingerprint_span_and_version, which globs `input_base` and reads glob characters in
    it as patterns: spans are then "not found" and the fingerprint counts no file, so new data is ignored.
    """

    def __init__(self, input_base_uri: str, splits, range_config: Optional[range_config_pb2.RangeConfig] = None):
        super().__init__(input_base_uri, splits, range_config)
        patterns = [split.pattern for split in splits]
        if len(patterns) != 1 or patterns[0] not in (CLASS_FILES_GLOB, SPAN_SPLIT_PATTERN):
            raise ValueError(f"ImageFolderExampleGen reads one split with pattern {CLASS_FILES_GLOB!r} or "
                             f"{SPAN_SPLIT_PATTERN!r}; got {patterns}")
        self._use_spans = patterns[0] == SPAN_SPLIT_PATTERN
        self._input_base = input_base_uri
        self._range_config = range_config
        self._resolved_pattern = None

    def resolve_span_and_version(self) -> Tuple[int, Optional[int]]:
        layout = scan_input(self._input_base, self._use_spans, self._range_config)
        self._fingerprint = input_fingerprint(layout)  # what the base class's get_input_fingerprint returns
        self._resolved_pattern = CLASS_FILES_GLOB
        if layout.span is not None:
            self._resolved_pattern = f"{os.path.basename(layout.root)}/{CLASS_FILES_GLOB}"
        return (layout.span or 0), None

    def get_pattern_for_span_version(self, pattern: str, span: int, version: Optional[int]) -> str:
        """The resolved pattern ('span-3/*/*'): the span folder's own name, zero padding included."""
        assert self._resolved_pattern, "Call resolve_span_and_version first."
        return self._resolved_pattern


def _require_folder(input_base: str, use_spans: bool) -> None:
    if not tf.io.gfile.isdir(input_base):
        raise DataLayoutError(
            f"input_base {input_base!r} does not exist or is not a folder: point it at the folder laid out "
            f"as {_EXPECTED_SPAN_LAYOUT if use_spans else _EXPECTED_LAYOUT}."
        )


def _is_local(path: str) -> bool:
    return "://" not in path


def _size_and_mtime(path: str) -> Tuple[int, int]:
    """(size in bytes, modification time in ns) of a file; (-1, -1) if it cannot be stat'ed (dangling link)."""
    try:
        if _is_local(path):
            stat = os.stat(path)
            return stat.st_size, stat.st_mtime_ns
        stat = tf.io.gfile.stat(path)
        return stat.length, stat.mtime_nsec
    except (OSError, tf.errors.OpError):
        return -1, -1


def _holds_data(folder: str) -> bool:
    """Whether a visible sub-folder of `folder` holds a visible file (TFX's 'span-N/*/*' matching something), or
    `folder` has no sub-folder but a table (find_table's rule; several tables count, scan_root refuses them)."""
    folders, files = _list_visible_entries(folder)
    if not folders:
        return any(is_table_name(name) for name in files)
    return any(_list_files(os.path.join(folder, name)) for name in folders)


def _entry_names(folder: str) -> List[str]:
    """Every entry name of `folder`, hidden ones included; fails on names that are not UTF-8."""
    if not _is_local(folder):
        # Object stores (gs://) mark folders with a trailing '/'.
        return [entry.rstrip("/") for entry in tf.io.gfile.listdir(folder)]
    # os.listdir, unlike gfile, survives a name that is not UTF-8, so the error can name it.
    names = os.listdir(folder)
    undecodable = [name.encode("utf-8", "surrogateescape") for name in names if not _is_utf8(name)]
    if undecodable:
        # The filename feature is UTF-8, and TFX's driver on Vertex/Kubeflow globs the data root with gfile, which
        # raises on such names: refuse them here.
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


def _is_file(path: str) -> bool:
    if _is_local(path):
        return os.path.isfile(path)
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


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
