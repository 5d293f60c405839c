"""The modality registry: image for contracts written before modalities, a clear refusal for unknown ones."""
import json
import shutil
import subprocess
import sys

import pytest

from hubtfx.components.modality import registry
from hubtfx.components.modality.base import Modality
from hubtfx.components.common.contract import (
    CONTRACT_FILENAME,
    ContractError,
    ModuleContract,
    read_contract,
    write_contract,
)


class _Fake(Modality):
    name = "fake-registry"
    raw_feature = "fake_raw"
    serving_input = "fake_input"
    accepted_description = "fake input"

    def parse_file(self, content):
        return content, None

    def preprocess(self, raw, custom_config):
        return {"fake": raw}

    def augment(self, inputs, seed):
        return inputs

    def render_example(self, raw, alt):
        return ""


@pytest.fixture
def fake():
    modality = _Fake()
    registry.register(modality)
    yield modality
    registry.unregister(modality.name)


def test_a_contract_written_before_modalities_is_an_image_contract(tmp_path):
    (tmp_path / CONTRACT_FILENAME).write_text(json.dumps({"image_size": [32, 32], "output_dim": 16}))
    contract = read_contract(str(tmp_path))
    assert contract.modality == "image"
    assert registry.modality_for(contract).name == "image"
    assert registry.modality_for(None).name == "image"  # no contract could be read: only images are inferred


def test_an_image_contract_is_written_without_the_field_so_module_hashes_do_not_change(tmp_path):
    contract = ModuleContract(image_size=(32, 32), output_dim=16)
    data = json.loads(open(write_contract(str(tmp_path), contract), encoding="utf-8").read())
    assert "modality" not in data
    assert read_contract(str(tmp_path)) == contract


def test_another_modality_round_trips_through_the_contract(tmp_path):
    contract = ModuleContract(modality="text", seq_length=16, preprocessor="sibling_preprocess")
    write_contract(str(tmp_path), contract)
    assert read_contract(str(tmp_path)) == contract


def test_an_unknown_modality_is_refused_naming_the_known_ones(tmp_path):
    (tmp_path / CONTRACT_FILENAME).write_text(json.dumps({"image_size": [8, 8], "modality": "audio"}))
    contract = read_contract(str(tmp_path))  # the contract only checks the type: the registry knows the names
    with pytest.raises(registry.UnknownModalityError, match=r"Unknown modality 'audio': hubtfx knows 'image'"):
        registry.modality_for(contract)
    with pytest.raises(ValueError, match="modality"):  # an UnknownModalityError is a ValueError
        registry.modality_named("")


@pytest.mark.parametrize("value", ["", 3, None])
def test_a_modality_that_is_not_a_name_is_a_contract_error(value):
    with pytest.raises(ContractError, match="modality"):
        ModuleContract(image_size=(8, 8), modality=value)


def test_a_registered_modality_is_found_by_name_and_contract(fake):
    assert registry.modality_named("fake-registry") is fake
    assert registry.modality_for(ModuleContract(image_size=(1, 1), modality="fake-registry")) is fake
    assert registry.known_names()[0] == "image" and "fake-registry" in registry.known_names()


def test_a_name_cannot_be_registered_twice(fake):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_Fake())
    with pytest.raises(ValueError, match="already registered"):
        registry.register(type("Image", (_Fake,), {"name": "image"})())


def test_importing_the_registry_imports_no_tensorflow():
    code = ("import sys; from hubtfx.components.modality import registry; "
            "from hubtfx.components.common.contract import ModuleContract; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_module_whose_contract_names_an_unknown_modality_is_a_config_error(tiny_module, tmp_path):
    from hubtfx.pipeline.hub_modules import module_resolution  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline.config import ConfigError, PipelineConfig  # pylint: disable=import-outside-toplevel
    module = tmp_path / "module"
    shutil.copytree(tiny_module, module)
    contract = json.loads((module / CONTRACT_FILENAME).read_text())
    (module / CONTRACT_FILENAME).write_text(json.dumps({**contract, "modality": "audio"}))
    with pytest.raises(ConfigError, match=f"Module {module}: Unknown modality 'audio'"):
        module_resolution.resolve(PipelineConfig(hub_handle=str(module)))


def test_the_resolved_modality_reaches_example_gen_and_transform(tiny_module, tmp_path):
    from hubtfx.components.example_gen.component import ImageFolderExampleGen  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline import pipeline  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline.hub_modules import module_resolution  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline.config import PipelineConfig  # pylint: disable=import-outside-toplevel
    config = PipelineConfig(hub_handle=tiny_module, data_root=str(tmp_path))
    module = module_resolution.resolve(config)
    assert module.modality == "image"
    by_id = {component.id: component for component in pipeline.create_components(config, module)}
    # Unset for images: an image pipeline's ExampleGen keeps the cache key it had before modalities.
    assert by_id["ImageFolderExampleGen"].exec_properties["modality"] is None
    assert json.loads(by_id["Transform"].exec_properties["custom_config"])["modality"] == "image"
    with pytest.raises(registry.UnknownModalityError, match="'audio'"):
        ImageFolderExampleGen(input_base=str(tmp_path), modality="audio")
