"""Beam executor of ImageFolderExampleGen: image files in class folders (or the rows of a table of texts) ->
tf.Examples.

Each image file becomes one tf.Example:
  image_raw  bytes   the original file bytes (decoded later by Transform)
  label      int64   class id, index into label_map.json's "classes"
  label_name bytes   class name: the folder name in Unicode NFC, white space trimmed (class_names.py)
  filename   bytes   path relative to the class-folder root, e.g. b"daisy/1.jpg" (also the split key)

When the data root is a .csv/.tsv table instead (layout.scan_input; text modality only), each usable row becomes
the same tf.Example (`make_example`): the text under `text`, the label column's value as class name (normalised
like a folder name), and as filename the row key "text#<16 hex digits of the text's SHA-256>", which does not
change when other rows are inserted or reordered (table.py; exec properties text_column / label_column name the
columns). Skipped rows are reported with their line number; the label map, split, counts and the failure on a
class without examples are the folder layout's.

Which files are examples, what is stored of them and why one is skipped is the modality's (exec property
`modality`, image when absent; see hubtfx.components.modality); the image modality keeps a file's bytes.

The 'train'/'eval' split follows split.SplitRule: a hash of `filename`, rebalanced so that a class never lands
wholly in one split (see split.py for the rule). The per-class count of each split and the images moved by the
rebalancing are recorded in the ingestion report.

Files that `image_ops.decode_rgb` refuses or cannot decode -- exactly what Transform will run -- are skipped in
the same Beam pass that reads them (a tagged side output) and listed with their reason in
<examples uri>/ingestion_report.json: unsupported formats and variants and images over image_ops.MAX_PIXELS
(judged from the header, never decoded) with the same reason the exported model gives, corrupt files, unreadable
files and links that resolve outside the data root. The class-id map is written to
<examples uri>/label_map.json and, when label_map_path is set, kept stable across runs through that file.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any, Dict, List, Optional, Tuple, Union

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from hubtfx.components.common import artifact_files, feature_keys
from hubtfx.components.example_gen import class_names as class_names_lib
from hubtfx.components.example_gen import layout as layout_lib
from hubtfx.components.example_gen import split as split_lib
from hubtfx.components.example_gen import table as table_lib
from hubtfx.components.modality import registry as modalities
from hubtfx.components.transform import image_ops
from hubtfx.components.transform.image_ops import decode_failure_reason  # noqa: F401  (ExampleGen's skip reason)

LABEL_MAP_PATH_KEY = "label_map_path"
MODALITY_KEY = "modality"
# Header names of a table's text and label columns; unset means table.DEFAULT_TEXT_COLUMN / DEFAULT_LABEL_COLUMN.
TEXT_COLUMN_KEY = "text_column"
LABEL_COLUMN_KEY = "label_column"

# Private exec_properties the executor hands to its PTransform (TFX passes exec_properties through to it).
LAYOUT_KEY = "_image_folder_layout"
CLASS_NAMES_KEY = "_image_folder_class_names"
STATS_DIR_KEY = "_image_folder_stats_dir"
TABLE_DIGEST_KEY = "_image_folder_table_digest"  # table.Table.digest of the executor's read of a table

SKIPPED_TAG = "skipped"
_STATS_DIR_NAME = ".ingestion_stats"
_SKIPPED_STATS = "skipped.jsonl"
_MOVED_STATS = "rebalanced.jsonl"
_SPLIT_STATS = "split_{}.jsonl"  # [class name, examples] pairs

# Traced once per process: the header walks are tf.while_loops, slow when run op by op.
def feature_text(example: tf.train.Example, name: str) -> str:
    """The UTF-8 text of a one-value bytes feature (label_name, filename) of an example written here."""
    return example.features.feature[name].bytes_list.value[0].decode("utf-8")


def make_example(raw: bytes, label: int, label_name: str, filename: str,
                 raw_feature: str = feature_keys.IMAGE_KEY) -> tf.train.Example:
    """The tf.Example of one file; `raw` goes to the modality's raw feature."""

    def bytes_feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                raw_feature: bytes_feature(raw),
                feature_keys.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                feature_keys.LABEL_NAME_KEY: bytes_feature(label_name.encode("utf-8")),
                feature_keys.FILENAME_KEY: bytes_feature(filename.encode("utf-8")),
            }
        )
    )


def link_escape_reason(path: str, data_root: str) -> Optional[str]:
    """Why a local `path` must not be read: it resolves (through symlinks) outside `data_root`; else None."""
    if "://" in path:
        return None
    target = os.path.realpath(path)
    if os.path.commonpath([target, os.path.realpath(data_root)]) == os.path.realpath(data_root):
        return None
    return f"symbolic link to {target}, outside the data root: copy the file into the data root instead"


def _read_file(path: str) -> Tuple[Optional[bytes], Optional[str]]:
    """(content, None), or (None, why not) for a file that vanished, a dangling link or no permission."""
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read(), None
    except tf.errors.OpError as err:
        return None, f"cannot read the file: {image_ops.tf_error_detail(err)}"


class ReadImageDoFn(beam.DoFn):
    """(relative path, class name) -> tf.Example, or a {"file", "class", "reason"} dict on the skipped output."""

    def __init__(self, root: str, class_ids: Dict[str, int], data_root: str,
                 modality: str = modalities.DEFAULT_MODALITY):
        self._root = root
        self._class_ids = class_ids
        self._data_root = data_root  # the input base: a span folder may link to files of another span
        self._modality = modality  # by name: workers look the object up in their own registry

    def process(self, element: Tuple[str, str]):
        relative_path, class_name = element
        modality = modalities.modality_named(self._modality)
        path = os.path.join(self._root, relative_path)
        raw, reason = None, link_escape_reason(path, self._data_root)
        if reason is None:
            reason = modality.file_refusal(relative_path)
        if reason is None:
            raw, reason = _read_file(path)
        if reason is None:
            raw, reason = modality.parse_file(raw)
        if reason is not None:
            yield beam.pvalue.TaggedOutput(SKIPPED_TAG, {"file": relative_path, "class": class_name, "reason": reason})
            return
        yield make_example(raw, self._class_ids[class_name], class_name, relative_path, modality.raw_feature)


def mixed_order(files: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """(relative path, class name) pairs in a fixed order that mixes the classes: by a hash of the path.

    The layout lists files class by class, and the local runner writes examples in the order they are read. Stage 2
    streams the training split through a shuffle buffer of a few hundred examples, which cannot mix classes that
    arrive one after another: with 780 images per class it trained on one class at a time and its validation loss
    blew up after one epoch (0.06 -> 1.44 at 9,716 animal-mnist images; benchmarks/scaling.py). Hashing keeps the
    order the same for the same files, whichever order the file system lists them in.
    """
    return sorted(files, key=lambda pair: _mixing_key(pair[0]))


def _mixing_key(name: str) -> bytes:
    return hashlib.sha256(name.encode("utf-8")).digest()


class ReadImageFolder(beam.PTransform):
    """Reads the files of a scanned layout; outputs 'examples' (tf.Example) and 'skipped' (dict) PCollections."""

    def __init__(self, layout: layout_lib.Layout, class_names: List[str],
                 modality: str = modalities.DEFAULT_MODALITY):
        super().__init__()
        missing = sorted(set(layout.class_names) - set(class_names))
        if missing:
            raise ValueError(f"class ids missing for class folders {missing}; resolve the label map first")
        self._layout = layout
        self._class_ids = {name: index for index, name in enumerate(class_names)}
        self._modality = modality

    def expand(self, pipeline: beam.Pipeline):
        return (
            pipeline
            | "ListFiles" >> beam.Create(mixed_order(self._layout.relative_paths()))
            # Spread the reads over workers even though Create produces one bundle.
            | "Reshuffle" >> beam.Reshuffle()
            | "ReadAndCheck"
            >> beam.ParDo(ReadImageDoFn(self._layout.root, self._class_ids, self._layout.input_base,
                                        self._modality)).with_outputs(SKIPPED_TAG, main="examples")
        )


class ReadTableDoFn(beam.DoFn):
    """A table's path -> one tf.Example per usable row, and a skipped-row dict (SkippedRow.report_record) per other
    row on the skipped output.

    The executor read the table already (for its classes); this read must see the same bytes, so a table rewritten
    in between fails the run instead of writing examples the label map and report do not describe.
    """

    def __init__(self, columns: Tuple[str, str], digest: str, class_ids: Dict[str, int], modality: str):
        self._columns = columns
        self._digest = digest
        self._class_ids = class_ids
        self._modality = modality  # by name: workers look the object up in their own registry

    def process(self, path: str):
        table = table_lib.read_table(path, *self._columns)
        if table.digest != self._digest:
            raise layout_lib.DataLayoutError(f"the table {path!r} changed while it was being ingested: rerun")
        raw_feature = modalities.modality_named(self._modality).raw_feature
        # Mixed like an image folder's files (mixed_order): a table sorted by label would reach stage 2 grouped.
        for row in sorted(table.rows, key=lambda row: _mixing_key(row.key)):
            yield make_example(row.text, self._class_ids[row.class_name], row.class_name, row.key, raw_feature)
        for row in table.skipped:
            yield beam.pvalue.TaggedOutput(SKIPPED_TAG, row.report_record(table.name))


class ReadTable(beam.PTransform):
    """Reads a table of texts; outputs 'examples' (tf.Example) and 'skipped' (dict) PCollections, like
    ReadImageFolder.

    Only the path enters the pipeline, not the rows: a table of a few hundred megabytes would otherwise be pickled
    into the job's graph. One worker reads it (a csv record may span lines, so the file cannot be split).
    """

    def __init__(self, layout: layout_lib.TableLayout, columns: Tuple[str, str], digest: str,
                 class_names: List[str], modality: str):
        super().__init__()
        self._layout = layout
        self._do_fn = ReadTableDoFn(columns, digest, {name: index for index, name in enumerate(class_names)},
                                    modality)

    def expand(self, pipeline: beam.Pipeline):
        return (
            pipeline
            | "TablePath" >> beam.Create([self._layout.path])
            | "ReadRows" >> beam.ParDo(self._do_fn).with_outputs(SKIPPED_TAG, main="examples")
        )


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def ImageFolderToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
    """TFX input-source transform: the class folders (or the table) of the driver-resolved split pattern ->
    tf.Examples.

    Reads the files of the executor's scan (exec_properties[LAYOUT_KEY], so the report's files_seen is
    exactly what was read) and writes the skipped files as JSON lines to the exec_properties[STATS_DIR_KEY]
    folder, for the executor's ingestion report.
    """
    layout = exec_properties[LAYOUT_KEY]
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    expected_root = layout_lib.class_root_for_pattern(input_base, split_pattern)
    if layout.root != expected_root:
        raise ValueError(f"scanned layout root {layout.root!r} is not the split pattern's root {expected_root!r}")
    if isinstance(layout, layout_lib.TableLayout):
        outputs = pipeline | "ReadTable" >> ReadTable(
            layout, table_columns(exec_properties), exec_properties[TABLE_DIGEST_KEY],
            exec_properties[CLASS_NAMES_KEY], _modality_name(exec_properties))
    else:
        outputs = pipeline | "ReadImageFolder" >> ReadImageFolder(layout, exec_properties[CLASS_NAMES_KEY],
                                                                  _modality_name(exec_properties))
    stats_dir = exec_properties[STATS_DIR_KEY]
    _ = outputs[SKIPPED_TAG] | "WriteSkipped" >> _WriteJsonLines(os.path.join(stats_dir, _SKIPPED_STATS))
    return outputs.examples


class _WriteJsonLines(beam.PTransform):
    """Writes the elements as JSON lines to exactly `path` (one shard; the stats are tiny)."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, pcoll):
        return (
            pcoll
            | "ToJson" >> beam.Map(json.dumps, sort_keys=True)
            | "Write" >> beam.io.WriteToText(self._path, shard_name_template="", num_shards=1)
        )


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """ImageFolderExampleGen executor: BaseExampleGenExecutor plus class ids, skip report and counts."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return ImageFolderToExample

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]):
        """{'train': examples, 'eval': examples}, split by split.SplitRule instead of TFX's hash-only split.

        The rebalancing needs every used path of a class, so the (class, path) pairs -- not the images -- are
        grouped by class; the moves are a side input of the partition. Writes the per-class count of each split
        and the moved images to the stats folder.
        """
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        rule = split_lib.SplitRule.from_output_config(output_config)
        stats_dir = exec_properties[STATS_DIR_KEY]
        examples = pipeline | "InputToRecord" >> ImageFolderToExample(  # pylint: disable=no-value-for-parameter
            exec_properties, _single_split_pattern(exec_properties))
        moved = (
            examples
            | "ClassAndPath" >> beam.Map(lambda e: (feature_text(e, feature_keys.LABEL_NAME_KEY),
                                                   feature_text(e, feature_keys.FILENAME_KEY)))
            | "GroupByClass" >> beam.GroupByKey()
            | "Rebalance" >> beam.FlatMap(
                lambda class_paths: [{"file": path, "class": class_paths[0], "split": split}
                                     for path, split in sorted(rule.rebalance(class_paths[1]).items())])
        )
        _ = moved | "WriteMoved" >> _WriteJsonLines(os.path.join(stats_dir, _MOVED_STATS))
        moved_splits = beam.pvalue.AsDict(moved | "MovedSplit" >> beam.Map(lambda m: (m["file"], m["split"])))
        parts = examples | "SplitData" >> beam.Partition(
            lambda e, _, moves: rule.split_index(feature_text(e, feature_keys.FILENAME_KEY), moves),
            len(split_lib.SPLIT_NAMES), moved_splits)
        splits = dict(zip(split_lib.SPLIT_NAMES, parts))
        for split_name, split_examples in splits.items():
            _ = (
                split_examples
                | f"LabelNames[{split_name}]" >> beam.Map(feature_text, feature_keys.LABEL_NAME_KEY)
                | f"CountPerClass[{split_name}]" >> beam.combiners.Count.PerElement()
                | f"WriteCounts[{split_name}]"
                >> _WriteJsonLines(os.path.join(stats_dir, _SPLIT_STATS.format(split_name)))
            )
        return splits

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        layout = layout_lib.scan_root(
            input_base,
            layout_lib.class_root_for_pattern(input_base, _single_split_pattern(exec_properties)),
            exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME),
        )
        _check_driver_saw_the_files(exec_properties, layout)
        modality = modalities.modality_named(_modality_name(exec_properties))
        table = None
        if isinstance(layout, layout_lib.TableLayout):
            table_lib.check_modality_reads_tables(modality, layout.path)
            table = table_lib.read_table(layout.path, *table_columns(exec_properties))
        found = table if table is not None else layout
        label_map_path = exec_properties.get(LABEL_MAP_PATH_KEY) or None
        class_names, label_map_notes = resolve_class_names(found.class_names, label_map_path)
        name_notes = found.name_notes() + label_map_notes
        for note in name_notes:
            logging.warning("Class names: %s", note)
        stats_dir = os.path.join(examples.uri, _STATS_DIR_NAME)

        super().Do(
            input_dict,
            output_dict,
            {**exec_properties, LAYOUT_KEY: layout, CLASS_NAMES_KEY: class_names, STATS_DIR_KEY: stats_dir,
             TABLE_DIGEST_KEY: table.digest if table is not None else None},
        )

        report = build_report(layout, stats_dir, artifact_utils.decode_split_names(examples.split_names), table)
        report["class_name_notes"] = name_notes
        tf.io.gfile.rmtree(stats_dir)
        write_json_atomically(os.path.join(examples.uri, artifact_files.INGESTION_REPORT_FILE), report)
        write_json_atomically(os.path.join(examples.uri, artifact_files.LABEL_MAP_FILE),
                              {artifact_files.LABEL_MAP_CLASSES_KEY: class_names})
        examples.set_int_custom_property("files_seen", report["files_seen"])
        examples.set_int_custom_property("examples_written", report["examples_written"])
        examples.set_int_custom_property("files_skipped", len(report["skipped"]))
        _log_skipped(report)
        _fail_on_classes_without_images(report, layout.root, modality.accepted_description,
                                        table.path if table is not None else None)
        if label_map_path:
            # Only after a successful run, so a failed ingestion does not reserve ids.
            write_json_atomically(label_map_path, {artifact_files.LABEL_MAP_CLASSES_KEY: class_names})


def _modality_name(exec_properties: Dict[str, Any]) -> str:
    return exec_properties.get(MODALITY_KEY) or modalities.DEFAULT_MODALITY


def table_columns(exec_properties: Dict[str, Any]) -> Tuple[str, str]:
    """(text column, label column) a table is read with: the exec properties, or table.py's defaults."""
    return (exec_properties.get(TEXT_COLUMN_KEY) or table_lib.DEFAULT_TEXT_COLUMN,
            exec_properties.get(LABEL_COLUMN_KEY) or table_lib.DEFAULT_LABEL_COLUMN)


def _single_split_pattern(exec_properties: Dict[str, Any]) -> str:
    """The driver-resolved input pattern; the component always configures exactly one input split."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    if len(input_config.splits) != 1:
        raise ValueError(
            f"ImageFolderExampleGen reads one input split and splits it by eval_percent; got "
            f"{len(input_config.splits)} input splits"
        )
    return input_config.splits[0].pattern


def _check_driver_saw_the_files(exec_properties: Dict[str, Any],
                                layout: Union[layout_lib.Layout, layout_lib.TableLayout]) -> None:
    """Fails when the input fingerprint was taken by a driver that globbed the data root and missed files.

    ImageFolderDriver fingerprints by listing (layout.FINGERPRINT_PREFIX). On Vertex / Kubeflow, TFX's own
    driver container fingerprints by globbing '<input_base>/*/*'; with '[', '*' or '?' in the data root its
    count differs from the files listed here, and a later run would be served from cache on new data.
    """
    fingerprint = exec_properties.get(example_gen_utils.FINGERPRINT_PROPERTY_NAME) or ""
    counted = layout_lib.fingerprint_file_count(fingerprint)
    if fingerprint.startswith(layout_lib.FINGERPRINT_PREFIX) or counted in (None, layout.num_files):
        return
    characters = layout_lib.glob_characters(layout.input_base)
    cause = (f"the data root holds the glob character(s) {characters}, which TFX's driver reads as a pattern: "
             "rename the folder without them" if characters else "the data changed while the run started: rerun")
    raise layout_lib.DataLayoutError(
        f"ExampleGen's driver fingerprinted {counted} files under {layout.input_base!r} but {layout.num_files} "
        f"are there; {cause}."
    )


def read_label_map(path: str) -> List[str]:
    """Class names (index = id) from a {"classes": [...]} label map file."""
    with tf.io.gfile.GFile(path, "r") as handle:
        try:
            classes = json.load(handle)[artifact_files.LABEL_MAP_CLASSES_KEY]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"label map {path!r} is not of the form "
                f"{{\"{artifact_files.LABEL_MAP_CLASSES_KEY}\": [\"name0\", ...]}} ({err}); fix or delete it "
                "(deleting it renumbers the classes in sorted order)"
            ) from err
    if (not isinstance(classes, list) or not all(isinstance(name, str) for name in classes)
            or len(set(classes)) != len(classes)):
        raise ValueError(f"label map {path!r}: '{artifact_files.LABEL_MAP_CLASSES_KEY}' must be a list of distinct "
                         "names; fix or delete it")
    return classes


def resolve_class_names(found_classes: List[str], label_map_path: Optional[str]) -> Tuple[List[str], List[str]]:
    """(class names in id order, notes): an existing label map's order, then new classes (sorted) appended.

    Args:
      found_classes: the layout's class names (already normalised, class_names.class_name_of).
      label_map_path: the persisted label map, or None.

    Returns the names and one note per change made to a label map written before class names were
    normalised (an entry respelled in NFC, or merged with an earlier entry of the same class; see
    class_names.normalise_label_map). The caller writes the names back after a successful run.

    Raises:
      layout.DataLayoutError: class names (found or persisted) that look alike but differ (NFKC).
      ValueError: a malformed label map.
    """
    if not label_map_path or not tf.io.gfile.exists(label_map_path):
        return sorted(found_classes), []
    try:
        known, notes = class_names_lib.normalise_label_map(read_label_map(label_map_path))
        new = sorted(set(found_classes) - set(known))
        class_names_lib.check_look_alikes(known + new, f"the label map {label_map_path!r} with this data's classes")
    except class_names_lib.ClassNameError as err:
        raise layout_lib.DataLayoutError(str(err)) from None
    notes = [f"label map {label_map_path}: {note}" for note in notes]
    if new:
        logging.warning(
            "New classes %s not in label map %s: appended with ids %d..%d; existing ids are unchanged.",
            new, label_map_path, len(known), len(known) + len(new) - 1,
        )
    absent = [name for name in known if name not in found_classes]
    if absent:
        logging.warning(
            "Classes %s of label map %s have no folder in this input; their ids are kept.", absent, label_map_path
        )
    return known + new, notes


def write_json_atomically(path: str, payload: Dict[str, Any]) -> None:
    """Writes JSON via a temporary file and a rename, so readers never see a half-written file."""
    parent = os.path.dirname(path)
    if parent:
        tf.io.gfile.makedirs(parent)
    temp_path = f"{path}.tmp-{uuid.uuid4().hex}"
    with tf.io.gfile.GFile(temp_path, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=False)
        handle.write("\n")
    tf.io.gfile.rename(temp_path, path, overwrite=True)


def _read_json_lines(path: str) -> List[Any]:
    with tf.io.gfile.GFile(path, "r") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build_report(layout: Union[layout_lib.Layout, layout_lib.TableLayout], stats_dir: str, split_names: List[str],
                 table: Optional[table_lib.Table] = None) -> Dict[str, Any]:
    """The ingestion report from the layout (and the executor's read of a table) and the Beam job's stats files.

    per_class maps each class folder to {"used", "skipped", and one example count per split name}; "rebalanced"
    lists the images split.SplitRule moved away from their hashed split ({"file", "class", "split"}).

    For a table, the classes are its labels, files_seen counts its rows (also as rows_seen), each skipped entry
    also has its "row" (line number) and "cause", sorted by row, and skipped_per_cause counts them (table.CAUSES);
    a row without a readable label counts in no class's "skipped".
    """
    # Rows by line number ("reviews.csv:10" sorts before "reviews.csv:9"); files (no "row") by path, as before.
    skipped = sorted(_read_json_lines(os.path.join(stats_dir, _SKIPPED_STATS)),
                     key=lambda record: (record.get("row", 0), record["file"]))
    per_split_class = {
        split_name: dict(map(tuple, _read_json_lines(os.path.join(stats_dir, _SPLIT_STATS.format(split_name)))))
        for split_name in split_names
    }
    class_names = table.class_names if table is not None else layout.class_names
    skipped_per_class = {name: 0 for name in class_names}
    for record in skipped:
        if record.get("class") is not None:
            skipped_per_class[record["class"]] += 1
    per_class = {}
    for name in class_names:
        in_splits = {split_name: per_split_class[split_name].get(name, 0) for split_name in split_names}
        per_class[name] = {"used": sum(in_splits.values()), "skipped": skipped_per_class[name], **in_splits}
    report = {
        "input_base": layout.input_base,
        "span": layout.span,
        "files_seen": table.records if table is not None else layout.num_files,
        "examples_written": sum(counts["used"] for counts in per_class.values()),
        "per_class": per_class,
        "per_split": {split_name: sum(counts.values()) for split_name, counts in per_split_class.items()},
        "rebalanced": sorted(_read_json_lines(os.path.join(stats_dir, _MOVED_STATS)), key=lambda m: m["file"]),
        "skipped": [{key: record[key] for key in ("file", "row", "cause", "reason") if key in record}
                    for record in skipped],
    }
    if table is not None:
        report.update(table=table.path, rows_seen=table.records, skipped_per_cause=table.skipped_per_cause())
    return report


def _log_skipped(report: Dict[str, Any]) -> None:
    if report["skipped"] and "table" in report:
        logging.warning("Skipped %d of %d rows of %s:\n%s", len(report["skipped"]), report["rows_seen"],
                        report["table"], "\n".join(f"  line {r['row']}: {r['reason']}" for r in report["skipped"]))
    elif report["skipped"]:
        logging.warning(
            "Skipped %d of %d files (see why below):\n%s",
            len(report["skipped"]),
            report["files_seen"],
            "\n".join(f"  {record['file']}: {record['reason']}" for record in report["skipped"]),
        )


def _fail_on_classes_without_images(report: Dict[str, Any], root: str, accepted: str,
                                    table_path: Optional[str] = None) -> None:
    """A class whose files (a table's: rows) were all skipped cannot be learned; the report lists why each was
    skipped."""
    unusable = [name for name, counts in report["per_class"].items() if counts["used"] == 0]
    if unusable and table_path is not None:
        raise layout_lib.DataLayoutError(
            f"label(s) {unusable} of the table {table_path!r} have no usable row: every row with them was skipped; "
            f"see the skipped rows (line and reason) in {artifact_files.INGESTION_REPORT_FILE} of the Examples "
            "artifact. Fix those rows, or delete them so that the label is no class."
        )
    if unusable:
        raise layout_lib.DataLayoutError(
            f"class folder(s) {unusable} under {root!r} have no {accepted}; see "
            f"the skipped files in {artifact_files.INGESTION_REPORT_FILE} of the Examples artifact. Add files that are, or "
            "remove the folder(s)."
        )

