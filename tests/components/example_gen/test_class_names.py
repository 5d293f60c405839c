"""Class-name identity (issue 13, case 12): folder names that print the same are one class.

'café' in NFC (U+00E9) and in NFD (e + U+0301) are two different folders on Linux; they become one class
'café' (NFC), in the data and in the persisted, append-only label map.
"""
import io
import json
import os
import unicodedata

import pytest
import tensorflow as tf
from PIL import Image
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from hubtfx.components.common import artifact_files
from hubtfx.components.example_gen import class_names
from hubtfx.components.example_gen import executor as executor_lib
from hubtfx.components.example_gen.component import make_output_config
from hubtfx.components.example_gen.layout import DataLayoutError, scan_layout

CAFE_NFC = unicodedata.normalize("NFC", "caf\u00e9")
CAFE_NFD = unicodedata.normalize("NFD", "caf\u00e9")
THE = "th\u00e9"
FULL_WIDTH_CAFE = "\uff43\uff41\uff46\u00e9"  # 'ｃａｆé'


def _png(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _make(root, folders, per_folder=2):
    for folder in folders:
        os.makedirs(os.path.join(root, folder))
        for i in range(per_folder):
            with open(os.path.join(root, folder, f"img_{i}.png"), "wb") as handle:
                handle.write(_png((200, 30, 30)))


def test_the_same_name_in_nfc_nfd_or_with_surrounding_spaces_is_one_class():
    assert CAFE_NFC != CAFE_NFD
    groups = class_names.group_folders([CAFE_NFD, CAFE_NFC, THE, f" {THE} "])
    assert groups == {CAFE_NFC: sorted([CAFE_NFC, CAFE_NFD]), THE: sorted([THE, f" {THE} "])}
    assert all(unicodedata.is_normalized("NFC", name) for name in groups)


def test_case_only_differences_are_different_classes():
    assert sorted(class_names.group_folders(["a", "A", "Caf\u00e9", CAFE_NFD])) == ["A", "Caf\u00e9", "a", CAFE_NFC]


@pytest.mark.parametrize("look_alike", [FULL_WIDTH_CAFE, "caf\u00e9\u00a0bar"], ids=["full_width", "no_break_space"])
def test_names_that_only_compatibility_mapping_makes_equal_are_refused_with_code_points(look_alike):
    plain = class_names.class_name_of(unicodedata.normalize("NFKC", look_alike))
    with pytest.raises(class_names.ClassNameError) as raised:
        class_names.group_folders([plain, look_alike, THE])
    message = str(raised.value)
    assert class_names.code_points(look_alike) in message and class_names.code_points(plain) in message
    assert "NFKC" in message and "Rename" in message


def test_a_blank_folder_name_is_refused():
    with pytest.raises(class_names.ClassNameError, match=r"' ' \(U\+0020\) has a blank name"):
        class_names.group_folders([" ", "a"])


def test_case_12_folders_are_merged_into_one_class_with_a_note_naming_the_code_points(tmp_path):
    root = str(tmp_path / "single")
    _make(root, [CAFE_NFC, CAFE_NFD, THE])

    layout = scan_layout(root)

    assert layout.class_names == [CAFE_NFC, THE]
    assert layout.file_counts == {CAFE_NFC: 4, THE: 2}
    assert {path.split("/")[0] for path, name in layout.relative_paths() if name == CAFE_NFC} == {CAFE_NFC, CAFE_NFD}
    (note,) = layout.name_notes()
    assert "U+0065 U+0301" in note and "U+00E9" in note and "merged into one class" in note


def test_a_lone_nfd_folder_is_read_as_the_nfc_class_and_the_note_gives_the_convmv_command(tmp_path):
    root = str(tmp_path / "spans" / "span-2")
    _make(root, [CAFE_NFD, THE])
    layout = scan_layout(str(tmp_path / "spans"), use_spans=True)
    assert layout.class_names == [CAFE_NFC, THE]
    (note,) = layout.name_notes()
    assert f"convmv -f utf8 -t utf8 --nfc -r --notest {root}" in note


def test_look_alike_folders_stop_the_layout_scan(tmp_path):
    _make(str(tmp_path), [CAFE_NFC, FULL_WIDTH_CAFE])
    with pytest.raises(DataLayoutError, match="U\\+FF43 U\\+FF41 U\\+FF46 U\\+00E9"):
        scan_layout(str(tmp_path))


def test_a_later_span_spelled_in_nfd_keeps_the_existing_id(tmp_path):
    label_map = str(tmp_path / "label_map.json")
    executor_lib.write_json_atomically(label_map, {"classes": [CAFE_NFC, THE]})
    # span 2's folders, as scan_layout names them
    assert executor_lib.resolve_class_names(list(class_names.group_folders([CAFE_NFD, THE])), label_map) == (
        [CAFE_NFC, THE], [])


def test_a_label_map_written_before_the_fix_is_repaired_and_every_change_is_noted(tmp_path):
    label_map = str(tmp_path / "label_map.json")
    executor_lib.write_json_atomically(label_map, {"classes": [CAFE_NFC, THE, CAFE_NFD, "t\u00e9a"]})

    names, notes = executor_lib.resolve_class_names([CAFE_NFC, THE], label_map)

    assert names == [CAFE_NFC, THE, "t\u00e9a"]
    text = "\n".join(notes)
    assert "(U+0063 U+0061 U+0066 U+0065 U+0301) at id 2 is the same class as" in text and "merged into id 0" in text
    assert "'t\u00e9a' 3 -> 2" in text


def test_a_label_map_holding_only_an_nfd_name_keeps_its_id_in_nfc(tmp_path):
    label_map = str(tmp_path / "label_map.json")
    executor_lib.write_json_atomically(label_map, {"classes": [THE, CAFE_NFD]})
    names, notes = executor_lib.resolve_class_names([CAFE_NFC, THE], label_map)
    assert names == [THE, CAFE_NFC]
    assert len(notes) == 1 and "is now written" in notes[0]


def test_a_label_map_and_data_that_look_alike_are_refused(tmp_path):
    label_map = str(tmp_path / "label_map.json")
    executor_lib.write_json_atomically(label_map, {"classes": [CAFE_NFC, THE]})
    with pytest.raises(DataLayoutError, match="label map .* look alike"):
        executor_lib.resolve_class_names([FULL_WIDTH_CAFE, THE], label_map)


def test_the_executor_writes_one_class_for_both_spellings_and_a_label_map_without_duplicates(tmp_path):
    root, out = str(tmp_path / "single"), str(tmp_path / "out")
    _make(root, [CAFE_NFC, CAFE_NFD, THE], per_folder=3)
    label_map = str(tmp_path / "label_map.json")
    executor_lib.write_json_atomically(label_map, {"classes": [CAFE_NFC, THE, CAFE_NFD]})  # written before the fix

    examples = standard_artifacts.Examples()
    examples.uri = out
    input_config = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="single_split", pattern="*/*")])
    executor_lib.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, {
        standard_component_specs.INPUT_BASE_KEY: root,
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(make_output_config(30)),
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        executor_lib.LABEL_MAP_PATH_KEY: label_map,
        "span": 0,
    })

    labels = []
    for split in ("train", "eval"):
        for path in tf.io.gfile.glob(os.path.join(out, f"Split-{split}", "*.gz")):
            for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
                feature = tf.train.Example.FromString(record.numpy()).features.feature
                labels.append((feature["label"].int64_list.value[0],
                               feature["label_name"].bytes_list.value[0].decode()))
    assert sorted(labels) == [(0, CAFE_NFC)] * 6 + [(1, THE)] * 3
    for path in (label_map, os.path.join(out, artifact_files.LABEL_MAP_FILE)):
        with open(path, encoding="utf-8") as handle:
            assert json.load(handle) == {"classes": [CAFE_NFC, THE]}
    with open(os.path.join(out, artifact_files.INGESTION_REPORT_FILE), encoding="utf-8") as handle:
        report = json.load(handle)
    assert {name: (c["used"], c["skipped"], c["train"] + c["eval"]) for name, c in report["per_class"].items()} == {
        CAFE_NFC: (6, 0, 6), THE: (3, 0, 3)}
    assert len(report["class_name_notes"]) == 2, "the merged folders, and the repaired label map"
