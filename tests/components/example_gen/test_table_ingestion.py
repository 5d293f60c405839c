"""A table of texts through ImageFolderExampleGen: its driver and executor (real Beam), and LocalDagRunner."""
import collections
import csv
import glob
import json
import os
import random

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.types import standard_artifacts, standard_component_specs

from hubtfx.components.common import artifact_files
from hubtfx.components.example_gen import executor as executor_lib
from hubtfx.components.example_gen import layout as layout_lib
from hubtfx.components.example_gen import table as table_lib
from hubtfx.components.example_gen.component import ImageFolderDriver, ImageFolderExampleGen
from hubtfx.components.trainer import stages
from hubtfx.components.example_gen.layout import DataLayoutError
from hubtfx.components.example_gen.split import SplitRule

_FEATURES = {"text", "label", "label_name", "filename"}


def _write_table(path, rows, header=("text", "label"), delimiter=",", bom=False):
    """Writes rows (tuples of str) as a table the csv module quotes as needed; returns the path."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _texts(label, count, prefix="review"):
    return [(f"{prefix} {label} {i}: a line, and\nanother", label) for i in range(count)]


def _run_executor(input_base, output_uri, **component_args):
    """ImageFolderExampleGen's driver (span, fingerprint, pattern) then its executor, as TFX runs them."""
    component = ImageFolderExampleGen(input_base=input_base, modality=component_args.pop("modality", "text"),
                                      **component_args)
    exec_properties = {key: value for key, value in component.exec_properties.items() if value is not None}
    resolved = ImageFolderDriver(metadata_handle=None).resolve_exec_properties(exec_properties, None, None)
    examples = standard_artifacts.Examples()
    examples.uri = output_uri
    executor_lib.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, resolved)
    return examples


def _read_examples(uri):
    """{split: {text: (label, label_name, filename)}}; fails on a text written twice or a feature too many."""
    splits = {}
    for split in ("train", "eval"):
        files = glob.glob(os.path.join(glob.escape(uri), f"Split-{split}", "*.gz"))
        assert files, f"no TFRecords for split {split}"
        records = {}
        for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            feature = tf.train.Example.FromString(serialized.numpy()).features.feature
            assert set(feature) == _FEATURES
            text = feature["text"].bytes_list.value[0].decode("utf-8")
            assert text not in records, f"{text!r} written twice"
            records[text] = (feature["label"].int64_list.value[0],
                             feature["label_name"].bytes_list.value[0].decode("utf-8"),
                             feature["filename"].bytes_list.value[0].decode("utf-8"))
        splits[split] = records
    return splits


def _read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _report(examples):
    return _read_json(os.path.join(examples.uri, artifact_files.INGESTION_REPORT_FILE))


def test_a_table_becomes_the_folder_layouts_examples_and_reports_each_skipped_row(tmp_path):
    good = _texts("pos", 15) + _texts("neg", 12)
    bad = [("", "pos"), ("no label here", " "), ("same words", "pos"), (good[0][0], "pos"), ("same words", "neg")]
    rows = good[:10] + bad + good[10:]  # a good row takes 2 lines: bad rows start on lines 22, 23, 24, 25, 27
    path = _write_table(tmp_path / "data" / "reviews.csv", rows, bom=True)
    with open(path, "ab") as handle:
        handle.write(b"caf\xe9,neg\n" + b"one,two,neg\n")  # lines 62 and 63

    examples = _run_executor(str(tmp_path / "data"), str(tmp_path / "out"), eval_percent=30)

    splits = _read_examples(examples.uri)
    written = {**splits["train"], **splits["eval"]}
    assert set(written) == {text for text, _ in good}, "every good row exactly once, no bad one"
    for text, (label, label_name, filename) in written.items():
        assert label_name == dict(good)[text] and label == ["neg", "pos"].index(label_name)
        assert filename == table_lib.row_key(text.encode("utf-8"))

    report = _report(examples)
    assert report["table"] == path and report["span"] == 0  # as for class folders without spans
    assert report["files_seen"] == report["rows_seen"] == len(good) + len(bad) + 2 == 34
    assert report["examples_written"] == len(good) == 27
    assert [(entry["row"], entry["cause"]) for entry in report["skipped"]] == [
        (22, "text"), (23, "label"), (24, "conflict"), (25, "duplicate"), (27, "conflict"), (62, "text"),
        (63, "fields")]
    assert all(entry["file"] == f"reviews.csv:{entry['row']}" and entry["reason"] for entry in report["skipped"])
    assert report["skipped_per_cause"] == {"fields": 1, "label": 1, "text": 2, "duplicate": 1, "conflict": 2}
    in_split = {split: collections.Counter(name for _, name, _ in records.values())
                for split, records in splits.items()}
    assert report["per_class"] == {
        name: {"used": used, "skipped": skipped, "train": in_split["train"][name], "eval": in_split["eval"][name]}
        for name, used, skipped in [("neg", 12, 2), ("pos", 15, 3)]}
    assert report["per_split"] == {"train": len(splits["train"]), "eval": len(splits["eval"])}
    assert _read_json(os.path.join(examples.uri, "label_map.json")) == {"classes": ["neg", "pos"]}
    properties = examples.mlmd_artifact.custom_properties
    assert (properties["files_seen"].int_value, properties["examples_written"].int_value,
            properties["files_skipped"].int_value) == (34, 27, 7)


def test_custom_columns_and_the_label_map_persist_across_runs_with_a_new_class_appended(tmp_path):
    label_map = str(tmp_path / "label_map.json")
    header = ("id", "sentiment", "review")
    rows = [(str(i), label, text) for i, (text, label) in enumerate(_texts("pos", 4) + _texts("neg", 4))]
    data = _write_table(tmp_path / "data" / "reviews.tsv", rows, header=header, delimiter="\t")
    columns = dict(text_column="review", label_column="sentiment", label_map_path=label_map)

    first = _run_executor(data, str(tmp_path / "out1"), **columns)
    assert _read_json(label_map) == {"classes": ["neg", "pos"]}

    rows += [(str(100 + i), "meh", text) for i, (text, _) in enumerate(_texts("meh", 3))]
    data = _write_table(tmp_path / "data" / "reviews.tsv", rows, header=header, delimiter="\t")
    second = _run_executor(data, str(tmp_path / "out2"), **columns)

    expected = ["neg", "pos", "meh"]  # 'meh' sorts before 'pos' but is appended: existing ids stay
    assert _read_json(label_map) == _read_json(os.path.join(second.uri, "label_map.json")) == {"classes": expected}
    written = {**_read_examples(second.uri)["train"], **_read_examples(second.uri)["eval"]}
    assert collections.Counter(name for _, name, _ in written.values()) == {"pos": 4, "neg": 4, "meh": 3}
    assert all(label == expected.index(name) for label, name, _ in written.values())
    first_written = {**_read_examples(first.uri)["train"], **_read_examples(first.uri)["eval"]}
    assert all(written[text][0] == label for text, (label, _, _) in first_written.items())


def test_a_label_whose_rows_are_all_unusable_fails_after_writing_the_report(tmp_path):
    label_map = str(tmp_path / "label_map.json")
    rows = _texts("pos", 3) + _texts("neg", 3) + [("   ", "broken"), ("", "broken")]
    data = _write_table(tmp_path / "t.csv", rows)

    with pytest.raises(DataLayoutError, match=r"label\(s\) \['broken'\] of the table .* no usable row.*Fix those rows"):
        _run_executor(data, str(tmp_path / "out"), label_map_path=label_map)

    report = _read_json(str(tmp_path / "out" / artifact_files.INGESTION_REPORT_FILE))
    assert report["per_class"]["broken"] == {"used": 0, "skipped": 2, "train": 0, "eval": 0}
    assert [entry["row"] for entry in report["skipped"]] == [14, 15]
    assert not os.path.exists(label_map), "a failed ingestion must not update the label map"


def test_a_texts_split_survives_shuffling_inserting_rows_and_renaming_the_table(tmp_path):
    rows = _texts("pos", 30) + _texts("neg", 30)
    first = _run_executor(_write_table(tmp_path / "a" / "export.csv", rows), str(tmp_path / "out1"))

    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    inserted = _texts("pos", 5, prefix="new") + shuffled[:25] + _texts("neg", 5, prefix="new") + shuffled[25:]
    second = _run_executor(_write_table(tmp_path / "b" / "export-2.csv", inserted), str(tmp_path / "out2"))

    def split_of(examples):
        return {text: split for split, records in _read_examples(examples.uri).items() for text in records}

    before, after = split_of(first), split_of(second)
    assert len(before) == 60 and len(after) == 70
    assert {text: after[text] for text in before} == before
    assert set(before.values()) == {"train", "eval"}
    # The splits are the hash rule's alone (nothing was moved to rebalance a class), so they are the key's.
    assert _report(first)["rebalanced"] == _report(second)["rebalanced"] == []
    rule = SplitRule.from_eval_percent(20)
    assert all(rule.hashed_split(table_lib.row_key(text.encode())) == split for text, split in before.items())


def test_the_beam_read_writes_the_rows_the_executor_read_and_fails_on_a_table_rewritten_since(tmp_path):
    path = _write_table(tmp_path / "t.csv", _texts("pos", 2) + _texts("neg", 2) + [("", "neg")])
    read = table_lib.read_table(path)
    layout = layout_lib.scan_input(path)
    with test_pipeline.TestPipeline() as pipeline:
        outputs = pipeline | executor_lib.ReadTable(layout, ("text", "label"), read.digest, ["pos", "neg"], "text")
        texts = outputs.examples | beam.Map(lambda e: (e.features.feature["text"].bytes_list.value[0],
                                                       e.features.feature["label"].int64_list.value[0]))
        assert_that(texts, equal_to([(row.text, ["pos", "neg"].index(row.class_name)) for row in read.rows]),
                    label="examples")
        assert_that(outputs[executor_lib.SKIPPED_TAG] | beam.Map(lambda r: (r["row"], r["cause"])),
                    equal_to([(10, "text")]), label="skipped")

    _write_table(tmp_path / "t.csv", _texts("pos", 3) + _texts("neg", 2))
    with pytest.raises(Exception, match="changed while it was being ingested: rerun"):
        with test_pipeline.TestPipeline() as pipeline:
            _ = pipeline | executor_lib.ReadTable(layout, ("text", "label"), read.digest, ["pos", "neg"], "text")


def test_the_image_modality_refuses_a_table(tmp_path):
    data = _write_table(tmp_path / "t.csv", _texts("pos", 2) + _texts("neg", 2))
    with pytest.raises(DataLayoutError, match=r"is a table of texts, but the module's modality is 'image'.*"
                                              r"only the text modality reads tables"):
        _run_executor(data, str(tmp_path / "out"), modality="image")


def test_the_component_stores_column_names_only_when_they_are_not_the_defaults():
    default = ImageFolderExampleGen(input_base="/data.csv", modality="text").exec_properties
    assert default["text_column"] is None and default["label_column"] is None
    custom = ImageFolderExampleGen(input_base="/d.csv", modality="text", text_column="body",
                                   label_column="stars").exec_properties
    assert (custom["text_column"], custom["label_column"]) == ("body", "stars")
    with pytest.raises(ValueError, match="two different column names"):
        ImageFolderExampleGen(input_base="/d.csv", modality="text", text_column="x", label_column="x")


def _run_pipeline(data, work, **component_args):
    """One ExampleGen run through LocalDagRunner and ML Metadata; returns the newest Examples artifact."""
    connection = metadata.sqlite_metadata_connection_config(os.path.join(work, "metadata.sqlite"))
    LocalDagRunner().run(tfx_pipeline.Pipeline(
        pipeline_name="table_test", pipeline_root=os.path.join(work, "root"), enable_cache=True,
        components=[ImageFolderExampleGen(input_base=data, modality="text", **component_args)],
        metadata_connection_config=connection))
    with metadata.Metadata(connection) as store:
        return max(store.store.get_artifacts_by_type("Examples"), key=lambda a: a.id)


def test_spans_of_tables_through_local_dag_runner(tmp_path):
    data, work = str(tmp_path / "data"), str(tmp_path / "work")
    _write_table(os.path.join(data, "span-1", "old.csv"), _texts("pos", 2) + _texts("neg", 2))
    span_2 = _write_table(os.path.join(data, "span-2", "reviews.tsv"),
                          # one line each: a TSV has no quoting, so no line break in a field
                          [(label, text.replace("\n", " ")) for text, label in _texts("pos", 6) + _texts("neg", 5)],
                          header=("Label", "Body"), delimiter="\t", bom=True)
    os.makedirs(os.path.join(data, "span-3"))  # no table yet: not the latest span
    args = dict(use_spans=True, eval_percent=25, text_column="Body", label_column="Label",
                label_map_path=os.path.join(work, "label_map.json"))

    first = _run_pipeline(data, work, **args)

    assert first.custom_properties["span"].int_value == 2
    assert (first.custom_properties["files_seen"].int_value, first.custom_properties["examples_written"].int_value,
            first.custom_properties["files_skipped"].int_value) == (11, 11, 0)
    splits = _read_examples(first.uri)
    assert collections.Counter(name for records in splits.values() for _, name, _ in records.values()) == {
        "pos": 6, "neg": 5}
    assert all(splits["eval"]), "each split holds examples"
    assert _read_json(os.path.join(first.uri, artifact_files.INGESTION_REPORT_FILE))["table"] == span_2

    assert _run_pipeline(data, work, **args).id == first.id, "an unchanged table: served from cache"
    with open(span_2, "a", encoding="utf-8") as handle:
        handle.write("neg\ta late review\n")
    third = _run_pipeline(data, work, **args)
    assert third.id != first.id, "a changed table: ExampleGen runs again"
    assert third.custom_properties["examples_written"].int_value == 12


def test_a_table_sorted_by_label_is_written_with_its_classes_mixed(tmp_path):
    # Stage 2's shuffle buffer cannot mix a train split written class by class (stages.class_grouping).
    _write_table(tmp_path / "data" / "reviews.csv", _texts("pos", 400) + _texts("neg", 400))
    examples = _run_executor(str(tmp_path / "data"), str(tmp_path / "out"), eval_percent=20)
    files = sorted(glob.glob(os.path.join(glob.escape(examples.uri), "Split-train", "*.gz")))
    labels = np.array([tf.train.Example.FromString(record.numpy()).features.feature["label"].int64_list.value[0]
                       for record in tf.data.TFRecordDataset(files, compression_type="GZIP")])
    assert len(labels) > 512  # two windows of class_grouping's: below that it measures nothing
    assert stages.class_grouping(labels) < stages.GROUPED_BY_CLASS < stages.class_grouping(np.sort(labels))
