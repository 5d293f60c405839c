"""Paths are data, never patterns (issue 13, case 08): glob characters in the data root, class or file names.

TFX's own ExampleGen driver globs '<data_root>/span-*/*/*' and '<data_root>/*/*'; with "photos [2024]" as the
data root those globs match nothing, spans are "not found" and the fingerprint never changes, so a rerun after
adding images is served from cache. hubtfx's driver lists folders instead (layout.ImageFolderInputProcessor).
"""
import dataclasses
import glob
import io
import json
import os

import pytest
import tensorflow as tf
from PIL import Image
from tfx.components.example_gen import utils as example_gen_utils
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from hubtfx.components.common import artifact_files
from hubtfx.components.example_gen import executor as executor_lib
from hubtfx.components.example_gen import layout as layout_lib
from hubtfx.components.example_gen.component import ImageFolderDriver, ImageFolderExampleGen, make_output_config
from hubtfx.kubeflow import runner
from hubtfx.pipeline.config import ConfigError, PipelineConfig

# Folder names that are ordinary on a file system but pattern syntax to glob, fnmatch or TFX's regex.
ROOT_NAMES = ["photos [2024]", "photos*", "what?", "{a,b}", "x]y", "[!ab]", "a{2}b", "(1)+.$^|"]


def _png(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _write(path, data=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(_png((200, 30, 30)) if data is None else data)


def _make_classes(root, per_class=2, classes=("red", "blue")):
    for name in classes:
        for i in range(per_class):
            _write(os.path.join(root, name, f"{i}.png"))


def _resolve(input_base, use_spans, range_config=None):
    """Runs hubtfx's ExampleGen driver as TFX does and returns its resolved exec_properties."""
    component = ImageFolderExampleGen(input_base=input_base, use_spans=use_spans, range_config=range_config)
    exec_properties = {key: value for key, value in component.exec_properties.items() if value is not None}
    resolved = ImageFolderDriver(metadata_handle=None).resolve_exec_properties(exec_properties, None, None)
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(resolved[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    return resolved, input_config.splits[0].pattern


@pytest.mark.parametrize("root_name", ROOT_NAMES)
def test_the_driver_finds_the_latest_span_and_every_file_under_a_root_with_pattern_characters(tmp_path, root_name):
    root = str(tmp_path / root_name)
    _make_classes(os.path.join(root, "span-1"), per_class=1)
    _make_classes(os.path.join(root, "span-2"), per_class=3)
    # A sibling that the unescaped pattern "photos*" would also match.
    _make_classes(str(tmp_path / "photos-old" / "span-9"), per_class=1)

    resolved, pattern = _resolve(root, use_spans=True)

    assert (resolved["span"], pattern) == (2, "span-2/*/*")
    assert layout_lib.fingerprint_file_count(resolved["input_fingerprint"]) == 6
    layout = layout_lib.scan_layout(root, use_spans=True)
    assert (layout.root, layout.file_counts) == (os.path.join(root, "span-2"), {"blue": 3, "red": 3})


def test_tfx_own_span_resolution_is_what_fails_on_brackets(tmp_path):
    """The root cause, kept as a check: if TFX ever escapes its globs, the workaround can go."""
    root = str(tmp_path / "photos [2024]")
    _make_classes(os.path.join(root, "span-1"))
    split = example_gen_pb2.Input.Split(name="single_split", pattern=layout_lib.SPAN_SPLIT_PATTERN)
    with pytest.raises(ValueError, match="Cannot find matching"):
        example_gen_utils.calculate_splits_fingerprint_span_and_version(root, [split])
    assert layout_lib.resolve_span(root) == (1, "span-1/*/*")


def test_a_static_range_config_selects_its_span_and_a_missing_one_is_named(tmp_path):
    root = str(tmp_path / "photos [2024]")
    for span in ("span-1", "span-2"):
        _make_classes(os.path.join(root, span))
    static = range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(start_span_number=1,
                                                                                    end_span_number=1))
    assert _resolve(root, True, static)[0]["span"] == 1
    static.static_range.start_span_number = static.static_range.end_span_number = 7
    with pytest.raises(layout_lib.DataLayoutError, match="no span-7 folder"):
        _resolve(root, True, static)


def test_the_latest_span_without_files_is_passed_over_and_duplicate_span_numbers_are_refused(tmp_path):
    root = str(tmp_path / "[x]")
    _make_classes(os.path.join(root, "span-1"))
    os.makedirs(os.path.join(root, "span-2", "red"))  # being created: TFX's glob would not match it either
    assert layout_lib.resolve_span(root) == (1, "span-1/*/*")
    _make_classes(os.path.join(root, "span-01"))
    with pytest.raises(layout_lib.DataLayoutError, match=r"\['span-01', 'span-1'\] .* both number span 1"):
        layout_lib.resolve_span(root)


def test_the_fingerprint_changes_with_every_added_renamed_or_rewritten_file(tmp_path):
    root = str(tmp_path / "flat [2024]")
    _make_classes(root)
    fingerprints = [_resolve(root, use_spans=False)[0]["input_fingerprint"]]
    assert _resolve(root, use_spans=False)[0]["input_fingerprint"] == fingerprints[0], "stable when unchanged"

    _write(os.path.join(root, "red", "late.png"))
    fingerprints.append(_resolve(root, use_spans=False)[0]["input_fingerprint"])
    os.rename(os.path.join(root, "red", "late.png"), os.path.join(root, "red", "later.png"))
    fingerprints.append(_resolve(root, use_spans=False)[0]["input_fingerprint"])
    stat = os.stat(os.path.join(root, "red", "later.png"))
    _write(os.path.join(root, "red", "later.png"), _png((10, 200, 10)))  # same size, new content
    os.utime(os.path.join(root, "red", "later.png"), ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    fingerprints.append(_resolve(root, use_spans=False)[0]["input_fingerprint"])

    assert len(set(fingerprints)) == 4
    assert [layout_lib.fingerprint_file_count(f) for f in fingerprints] == [4, 5, 5, 5]


def test_class_and_file_names_with_pattern_characters_are_listed_and_read(tmp_path):
    root = str(tmp_path / "data [1]")
    names = {"[red]": ["a*b.png", "c?.png", "[!x].png"], "blue{1,2}": ["{d}.png", "e]f.png", "g\\h.png"]}
    for class_name, files in names.items():
        for file_name in files:
            _write(os.path.join(root, class_name, file_name))

    examples = _run_executor(root, str(tmp_path / "out"), _resolve(root, use_spans=False)[0])

    report = _read_json(os.path.join(examples.uri, artifact_files.INGESTION_REPORT_FILE))
    assert (report["files_seen"], report["examples_written"], report["skipped"]) == (6, 6, [])
    written = set()
    for path in glob.glob(os.path.join(glob.escape(examples.uri), "Split-*", "*.gz")):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            written.add(tf.train.Example.FromString(record.numpy()).features.feature["filename"].bytes_list.value[0])
    assert written == {f"{c}/{f}".encode() for c, files in names.items() for f in files}


def test_a_fingerprint_from_a_globbing_driver_that_missed_files_fails_the_executor(tmp_path):
    """On Vertex/Kubeflow TFX's own driver container fingerprints by glob: its count is checked against the scan."""
    root = str(tmp_path / "flat [2024]")
    _make_classes(root)
    exec_properties = _resolve(root, use_spans=False)[0]
    exec_properties["input_fingerprint"] = "split:single_split,num_files:0,total_bytes:0,xor_checksum:0,sum_checksum:0"
    with pytest.raises(layout_lib.DataLayoutError, match=r"fingerprinted 0 files .* 4 are there.*\['\['\]"):
        _run_executor(root, str(tmp_path / "out"), exec_properties)
    exec_properties["input_fingerprint"] = exec_properties["input_fingerprint"].replace("num_files:0", "num_files:4")
    _run_executor(root, str(tmp_path / "out2"), exec_properties)  # TFX's count agrees: accepted


def test_escaping_makes_a_path_match_only_itself_and_names_the_pattern_characters(tmp_path):
    """What report.py relies on: glob.escape for tf.io.gfile.glob and Beam; local and gs:// paths."""
    folder = tmp_path / "run [1]"
    _write(str(folder / "Split-eval" / "data.gz"), b"x")
    _write(str(tmp_path / "run 1" / "Split-eval" / "decoy.gz"), b"x")  # what '[1]' means as a pattern
    pattern = os.path.join(str(folder), "Split-eval", "*")
    assert tf.io.gfile.glob(pattern) == [os.path.join(str(tmp_path), "run 1", "Split-eval", "decoy.gz")]
    assert tf.io.gfile.glob(os.path.join(glob.escape(str(folder)), "Split-eval", "*")) == [
        str(folder / "Split-eval" / "data.gz")]
    assert glob.escape("gs://bucket/photos [2024]/x*") == "gs://bucket/photos [[]2024]/x[*]"
    assert layout_lib.glob_characters("gs://bucket/photos [2024]/a?*") == ["*", "?", "["]
    assert layout_lib.glob_characters("gs://bucket/photos {2024}]!") == []


@pytest.mark.parametrize("output_dir", ["out [1]", "out*", "gs://bucket/run?"])
def test_an_output_folder_with_pattern_characters_is_refused_before_anything_runs(output_dir):
    with pytest.raises(ConfigError, match="glob pattern characters.*no '\\*', '\\?' or '\\['"):
        PipelineConfig(output_dir=output_dir).validate()
    PipelineConfig(output_dir="out {1} ]!").validate()  # not pattern characters to glob


@pytest.mark.parametrize("data_root", ["gs://bucket/photos [2024]", "gs://bucket/a*", "gs://bucket/{x}"])
def test_a_cluster_data_root_with_pattern_characters_is_refused_at_compile_time(data_root):
    config = PipelineConfig(image="us-docker.pkg.dev/p/r/hubtfx:1", data_root=data_root,
                            output_dir="gs://bucket/run", gcp_project="p")
    for target in runner.TARGETS:
        with pytest.raises(ConfigError, match="TFX's ExampleGen driver reads the data root as a glob"):
            runner.check_cluster_settings(config, target)
    runner.check_cluster_settings(dataclasses.replace(config, data_root="gs://bucket/photos 2024"), "vertex")


def test_a_new_file_in_a_bracketed_root_reruns_example_gen_instead_of_reusing_its_cache(tmp_path):
    """Case 08 B through LocalDagRunner and ML Metadata: unchanged data is cached, an added image is not."""
    data, work = str(tmp_path / "flat [2024]"), str(tmp_path / "work")
    _make_classes(data, per_class=3)

    runs = [_run_pipeline(data, work) for _ in range(2)]
    _write(os.path.join(data, "red", "late.png"), _png((180, 20, 20)))
    runs.append(_run_pipeline(data, work))

    (first, second, third) = runs
    assert second.id == first.id, "unchanged data: ExampleGen is served from cache"
    assert third.id != first.id, "an added image: ExampleGen runs again"
    assert [run.custom_properties["files_seen"].int_value for run in (first, third)] == [6, 7]
    report = _read_json(os.path.join(third.uri, artifact_files.INGESTION_REPORT_FILE))
    red = report["per_class"]["red"]
    assert (red["used"], red["skipped"], red["train"] + red["eval"]) == (4, 0, 4)


def _run_pipeline(data, work):
    """One ExampleGen run through LocalDagRunner; returns the newest Examples artifact in ML Metadata."""
    connection = metadata.sqlite_metadata_connection_config(os.path.join(work, "metadata.sqlite"))
    LocalDagRunner().run(tfx_pipeline.Pipeline(
        pipeline_name="paths_test", pipeline_root=os.path.join(work, "root"), enable_cache=True,
        components=[ImageFolderExampleGen(input_base=data, eval_percent=25)], metadata_connection_config=connection))
    with metadata.Metadata(connection) as store:
        return max(store.store.get_artifacts_by_type("Examples"), key=lambda a: a.id)


def _run_executor(input_base, output_uri, exec_properties):
    examples = standard_artifacts.Examples()
    examples.uri = output_uri
    exec_properties = {
        **exec_properties,
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(make_output_config(30)),
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
    }
    assert exec_properties[standard_component_specs.INPUT_BASE_KEY] == input_base
    executor_lib.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    return examples


def _read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
