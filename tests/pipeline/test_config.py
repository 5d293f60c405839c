import dataclasses

import pytest

from pipeline import config as config_lib
from pipeline.config import ConfigError, PipelineConfig


def test_defaults_are_valid_and_paths_derive_from_output_dir():
    config = PipelineConfig(output_dir="/x").validate()
    assert config.resolved_serving_dir == "/x/serving"
    assert config.resolved_metadata_path == "/x/metadata.sqlite"
    assert config.resolved_data_root == "/x/sample_data"
    assert config.push_base_dir == "/x/serving/hubtfx"
    assert config.effective_stage2_learning_rate == pytest.approx(config.stage1_learning_rate / 10)


def test_yaml_fills_the_config_and_converts_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage1_epochs: '4'\nimage_size: [160, 128]\nuse_spans: 'yes'\nfine_tune_blocks: all\n")
    config = config_lib.load_yaml(str(path))
    assert (config.stage1_epochs, config.image_size, config.use_spans) == (4, (160, 128), True)
    assert config_lib.parse_fine_tune_blocks(config.fine_tune_blocks) is None


@pytest.mark.parametrize("text, message", [
    ("stage1_epoch: 3\n", "Unknown configuration keys"),
    ("stage1_epochs: many\n", "stage1_epochs"),
    ("- a\n- b\n", "must hold a mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_yaml_gives_an_error_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config_lib.load_yaml(str(path))


@pytest.mark.parametrize("change", [
    {"eval_percent": 0}, {"batch_size": 0}, {"dropout": 1.0}, {"fine_tune_blocks": "-1"},
    {"fine_tune_blocks": "top"}, {"accuracy_threshold": 1.5}, {"image_size": (0, 3)}, {"stage1_epochs": 0},
])
def test_validate_rejects_out_of_range_values(change):
    with pytest.raises(ConfigError):
        dataclasses.replace(PipelineConfig(), **change).validate()


def test_training_params_are_plain_json_and_carry_the_stage2_default():
    params = PipelineConfig(stage1_learning_rate=0.01).training_params()
    assert params["stage2_learning_rate"] == pytest.approx(0.001)
    assert all(isinstance(v, (int, float, str, bool)) for v in params.values())


def test_internal_fields_are_not_user_settable():
    names = {f.name for f in config_lib.user_fields()}
    assert "module_sha256" not in names and "module_path" not in names
    with pytest.raises(ConfigError):
        config_lib.from_mapping({"module_sha256": "abc"})
