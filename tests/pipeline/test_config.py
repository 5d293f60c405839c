import dataclasses

import pytest

from hubtfx.components.trainer.params import TrainingParams, parse_fine_tune_blocks
from hubtfx.pipeline import config as config_lib
from hubtfx.pipeline.config import ConfigError, PipelineConfig


def test_defaults_are_valid_and_paths_derive_from_output_dir():
    config = PipelineConfig(output_dir="/x").validate()
    assert config.resolved_serving_dir == "/x/serving"
    assert config.resolved_metadata_path == "/x/metadata.sqlite"
    assert config.resolved_data_root == "/x/sample_data"
    assert config.push_base_dir == "/x/serving/hubtfx"


def test_yaml_fills_the_config_and_converts_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage2_epochs: '4'\nimage_size: [160, 128]\nuse_spans: 'yes'\nfine_tune_blocks: all\n")
    config = config_lib.load_yaml(str(path))
    assert (config.stage2_epochs, config.image_size, config.use_spans) == (4, (160, 128), True)
    assert parse_fine_tune_blocks(config.fine_tune_blocks) is None


@pytest.mark.parametrize("text, message", [
    ("stage2_epoch: 3\n", "Unknown configuration keys"),
    ("stage2_epochs: many\n", "stage2_epochs"),
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
    {"fine_tune_blocks": "top"}, {"accuracy_threshold": 1.5}, {"image_size": (0, 3)}, {"cv_folds": 1},
    {"feature_levels": "top"}, {"class_weight": "inverse"}, {"validation_fraction": 1.0}, {"aspect": "stretch"},
    {"beam_workers": 0},
])
def test_validate_rejects_out_of_range_values(change):
    with pytest.raises(ConfigError):
        dataclasses.replace(PipelineConfig(), **change).validate()


def test_training_params_are_plain_json_and_read_back_as_the_trainer_sees_them():
    config = PipelineConfig(stage2_learning_rate=0.01, fine_tune_blocks="all", cv_folds=3)
    params = config.training_params()
    assert all(isinstance(v, (int, float, str, bool)) for v in params.values())
    trainer = TrainingParams.from_custom_config(params)
    assert (trainer.stage2_learning_rate, trainer.fine_tune_blocks, trainer.cv_folds) == (0.01, None, 3)


def test_config_defaults_are_the_trainers_defaults():
    config, trainer = PipelineConfig(), TrainingParams()
    for name, value in config.training_params().items():
        assert TrainingParams.from_custom_config({name: value}) == trainer, name


def test_an_unknown_training_key_is_an_error_not_ignored():
    with pytest.raises(ValueError, match=r"Unknown training parameters \['stage1_epochs'\]"):
        TrainingParams.from_custom_config({"stage1_epochs": 30})


def test_the_resolved_module_is_no_part_of_the_config():
    """The module resolution determines travels as a ResolvedModule, not in the config: nobody can set it, and a
    config cannot be half resolved. (The config's `modality` is the user's request, empty by default; the module's
    modality is the ResolvedModule's, and resolution refuses a module whose contract says otherwise.)"""
    names = {f.name for f in dataclasses.fields(config_lib.PipelineConfig)}
    assert not names & {"module_path", "module_sha256", "value_range", "resize_method", "schema_path",
                        "preprocessor", "seq_length"}
    assert config_lib.PipelineConfig().modality == ""
    assert {f.name for f in config_lib.user_fields()} == names
    with pytest.raises(ConfigError):
        config_lib.from_mapping({"module_sha256": "abc"})


@pytest.mark.parametrize("text", ["-1", "top", "2.5", ""])
def test_the_config_and_the_trainer_refuse_a_bad_fine_tune_blocks_alike(text):
    with pytest.raises(ValueError) as from_trainer:
        TrainingParams.from_custom_config({"fine_tune_blocks": text})
    with pytest.raises(ConfigError) as from_config:
        PipelineConfig(fine_tune_blocks=text).validate()
    assert str(from_config.value) == str(from_trainer.value)
    assert "fine_tune_blocks must be a whole number >= 0 or 'all'" in str(from_trainer.value)


@pytest.mark.parametrize("text, blocks", [(" All ", None), ("0", 0), ("3", 3), (2, 2)])
def test_fine_tune_blocks_reads_a_count_or_all(text, blocks):
    assert parse_fine_tune_blocks(text) == blocks
    assert TrainingParams.from_custom_config({"fine_tune_blocks": text}).fine_tune_blocks == blocks
