"""End-to-end: ImageFolderExampleGen through TFX's LocalDagRunner with a SQLite ML Metadata store."""
import collections
import glob
import json
import os
import shutil

import tensorflow as tf
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from hubtfx.components.example_gen.component import ImageFolderExampleGen
from hubtfx.pipeline.datasets.sample_data import generate_dataset

_CLASSES = ["triangle", "star", "square"]  # sorted ids: square=0, star=1, triangle=2
_BAD = {
    "square/zero.jpg": (b"", "empty file"),
    "star/truncated.jpg": (None, "corrupt or truncated JPEG"),  # made from a generated JPEG
    "triangle/readme.jpg": (b"not an image\n", "not an image"),
    "triangle/scan.tiff": (b"II*\x00" + bytes(64), "unsupported format TIFF"),
}


def _run(data, work, run_id):
    """Runs a one-component pipeline and returns (Examples uri, its MLMD artifact)."""
    example_gen = ImageFolderExampleGen(
        input_base=data, use_spans=True, eval_percent=25, label_map_path=os.path.join(work, "label_map.json")
    )
    connection = metadata.sqlite_metadata_connection_config(os.path.join(work, "metadata.sqlite"))
    LocalDagRunner().run(
        tfx_pipeline.Pipeline(
            pipeline_name="example_gen_test",
            pipeline_root=os.path.join(work, "root"),
            components=[example_gen],
            metadata_connection_config=connection,
        )
    )
    with metadata.Metadata(connection) as store:
        artifact = max(store.store.get_artifacts_by_type("Examples"), key=lambda a: a.id)
    assert artifact.uri.endswith(f"/{run_id}"), "one new Examples artifact per run"
    return artifact.uri, artifact


def _read_examples(uri):
    """{split: {filename: (label, label_name, image bytes)}} from the gzipped TFRecords."""
    splits = {}
    for split in ("train", "eval"):
        files = glob.glob(os.path.join(uri, f"Split-{split}", "*.gz"))
        assert files, f"no TFRecords for split {split}"
        records = {}
        for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            feature = tf.train.Example.FromString(serialized.numpy()).features.feature
            assert set(feature) == {"image_raw", "label", "label_name", "filename"}
            filename = feature["filename"].bytes_list.value[0].decode()
            assert filename not in records, f"{filename} written twice"
            records[filename] = (
                feature["label"].int64_list.value[0],
                feature["label_name"].bytes_list.value[0].decode(),
                feature["image_raw"].bytes_list.value[0],
            )
        splits[split] = records
    return splits


def _read_json(path):
    with open(path) as handle:
        return json.load(handle)


def _file_bytes(root):
    """{relative path: bytes} of the files in root's class folders."""
    result = {}
    for path in glob.glob(os.path.join(root, "*", "*")):
        with open(path, "rb") as handle:
            result[os.path.relpath(path, root)] = handle.read()
    return result


def test_image_folder_example_gen_end_to_end(tmp_path):
    data, work = str(tmp_path / "data"), str(tmp_path / "work")
    span_1 = os.path.join(data, "span-1")
    generate_dataset(span_1, images_per_class=20, classes=_CLASSES, min_size=24, max_size=40)
    good = _file_bytes(span_1)
    a_jpeg = next(content for path, content in sorted(good.items()) if path.endswith(".jpg"))
    for relative_path, (content, _) in _BAD.items():
        if content is None:  # the truncated JPEG
            content = a_jpeg[: len(a_jpeg) // 2]
        with open(os.path.join(span_1, relative_path), "wb") as handle:
            handle.write(content)
    for extra in ("LICENSE.txt", "span-1/LICENSE.txt", "span-1/.DS_Store"):
        with open(os.path.join(data, extra), "w") as handle:
            handle.write("ignored")

    # Run 1: span-1, with bad files.
    uri, artifact = _run(data, work, 1)
    splits = _read_examples(uri)
    written = {**splits["train"], **splits["eval"]}
    assert set(written) == set(good), "every good image exactly once, no bad or ignored file"
    for filename, (label, label_name, raw) in written.items():
        assert label_name == filename.split("/")[0]
        assert label == sorted(_CLASSES).index(label_name)
        assert raw == good[filename]
    assert 0.1 <= len(splits["eval"]) / len(written) <= 0.42, "eval_percent=25"

    report = _read_json(os.path.join(uri, "ingestion_report.json"))
    assert report["span"] == 1 and report["input_base"] == data
    assert report["files_seen"] == 64 and report["examples_written"] == 60
    in_split = {split: collections.Counter(name for _, name, _ in records.values()) for split, records in splits.items()}
    assert report["per_class"] == {
        name: {"used": 20, "skipped": skipped, "train": in_split["train"][name], "eval": in_split["eval"][name]}
        for name, skipped in [("square", 1), ("star", 1), ("triangle", 2)]
    }
    assert report["per_split"] == {"train": len(splits["train"]), "eval": len(splits["eval"])}
    assert [entry["file"] for entry in report["skipped"]] == sorted(_BAD)
    for entry in report["skipped"]:
        assert entry["reason"].startswith(_BAD[entry["file"]][1])
    assert _read_json(os.path.join(uri, "label_map.json")) == {"classes": ["square", "star", "triangle"]}
    properties = artifact.custom_properties
    assert properties["span"].int_value == 1
    assert (properties["files_seen"].int_value, properties["examples_written"].int_value) == (64, 60)
    assert properties["files_skipped"].int_value == 4

    # Run 2: a new latest span with the same classes and file names -> same ids, same split per file.
    span_2 = os.path.join(data, "span-2")
    shutil.copytree(span_1, span_2, ignore=shutil.ignore_patterns(*[os.path.basename(p) for p in _BAD]))
    uri_2, artifact_2 = _run(data, work, 2)
    splits_2 = _read_examples(uri_2)
    assert artifact_2.custom_properties["span"].int_value == 2
    assert _read_json(os.path.join(uri_2, "ingestion_report.json"))["skipped"] == []
    assert {split: set(records) for split, records in splits_2.items()} == {
        split: set(records) for split, records in splits.items()
    }, "the split of a file is a deterministic hash of its relative path"
    assert _read_json(os.path.join(uri_2, "label_map.json")) == {"classes": ["square", "star", "triangle"]}

    # Run 3: span-3 adds 'circle', which sorts first but must be appended to keep the existing ids.
    generate_dataset(os.path.join(data, "span-3"), seed=3, images_per_class=3, classes=["circle", *_CLASSES],
                     min_size=24, max_size=40)
    uri_3, artifact_3 = _run(data, work, 3)
    assert artifact_3.custom_properties["span"].int_value == 3
    expected_classes = ["square", "star", "triangle", "circle"]
    assert _read_json(os.path.join(uri_3, "label_map.json")) == {"classes": expected_classes}
    assert _read_json(os.path.join(work, "label_map.json")) == {"classes": expected_classes}
    written_3 = {**_read_examples(uri_3)["train"], **_read_examples(uri_3)["eval"]}
    assert len(written_3) == 12
    assert all(label == expected_classes.index(name) for label, name, _ in written_3.values())
