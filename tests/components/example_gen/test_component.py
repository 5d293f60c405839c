"""Tests of the ImageFolderExampleGen component definition and its driver (no pipeline run)."""
import pytest
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from hubtfx.components.example_gen.component import ImageFolderDriver, ImageFolderExampleGen
from hubtfx.components.example_gen.layout import DataLayoutError
from hubtfx.pipeline.datasets.sample_data import generate_dataset


def _input_pattern(component):
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(component.exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    return input_config.splits[0].pattern


def test_constructor_configures_span_pattern_hash_split_and_label_map():
    component = ImageFolderExampleGen(input_base="/data", use_spans=True, eval_percent=30, label_map_path="/m.json")
    params = component.exec_properties
    assert _input_pattern(component) == "span-{SPAN}/*/*"
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(params[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
    split_config = output_config.split_config
    assert [(s.name, s.hash_buckets) for s in split_config.splits] == [("train", 70), ("eval", 30)]
    assert split_config.partition_feature_name == "filename"
    assert params["label_map_path"] == "/m.json"
    assert params[standard_component_specs.OUTPUT_FILE_FORMAT_KEY] == example_gen_pb2.FORMAT_TFRECORDS_GZIP
    assert _input_pattern(ImageFolderExampleGen(input_base="/data")) == "*/*"


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="eval_percent"):
        ImageFolderExampleGen(input_base="/data", eval_percent=0)
    static = range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(start_span_number=1, end_span_number=1)
    )
    with pytest.raises(ValueError, match="use_spans=True"):
        ImageFolderExampleGen(input_base="/data", range_config=static)


def test_driver_explains_a_missing_span_folder(tmp_path):
    generate_dataset(str(tmp_path), images_per_class=1, classes=["circle", "star"], min_size=24, max_size=24)
    component = ImageFolderExampleGen(input_base=str(tmp_path), use_spans=True)
    exec_properties = {key: value for key, value in component.exec_properties.items() if value is not None}
    with pytest.raises(DataLayoutError, match="no span folder"):
        ImageFolderDriver(metadata_handle=None).resolve_exec_properties(exec_properties, None, None)

