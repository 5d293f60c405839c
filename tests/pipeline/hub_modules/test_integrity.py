"""find_problem: every way a module folder can be incomplete is named before the module is vetted or loaded."""
import os
import shutil
from pathlib import Path

import pytest

from hubtfx.pipeline.hub_modules import integrity


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _data_shard(module: Path) -> Path:
    (shard,) = (module / "variables").glob("variables.data-*")
    return shard


# (damage, phrase the problem must contain): each is a way users' module folders really break.
DAMAGES = {
    "cleaned_cache_folder": (lambda m: [shutil.rmtree(m), (m / "variables").mkdir(parents=True),
                                        (m / "assets").mkdir()], "has no saved_model.pb"),
    "empty_folder": (lambda m: [shutil.rmtree(m), m.mkdir()], "is empty"),
    "truncated_saved_model": (lambda m: _truncate(m / "saved_model.pb"), "truncated or corrupt saved_model.pb"),
    "zero_byte_saved_model": (lambda m: (m / "saved_model.pb").write_bytes(b""), "no MetaGraph"),
    "no_variables_folder": (lambda m: shutil.rmtree(m / "variables"), "variables/ folder is missing"),
    "empty_variables_folder": (lambda m: [shutil.rmtree(m / "variables"), (m / "variables").mkdir()],
                               "variables/ folder is empty"),
    "truncated_variables": (lambda m: _truncate(_data_shard(m)), "truncated or corrupt variables"),
    "corrupt_variables": (lambda m: _flip_byte(_data_shard(m)), "truncated or corrupt variables"),
    "truncated_variables_index": (lambda m: _truncate(m / "variables" / "variables.index"),
                                  "truncated or corrupt variables"),
    "contract_not_json": (lambda m: (m / "hubtfx_contract.json").write_text("{\"image_size\": [32, 32"),
                          "malformed hubtfx_contract.json"),
    "contract_not_utf8": (lambda m: (m / "hubtfx_contract.json").write_bytes(b"\xff\xfe{}"),
                          "malformed hubtfx_contract.json"),
    "contract_wrong_types": (lambda m: (m / "hubtfx_contract.json").write_text('{"image_size": ["big", 32]}'),
                             "malformed hubtfx_contract.json"),
    "contract_a_list": (lambda m: (m / "hubtfx_contract.json").write_text("[224, 224]"),
                        "malformed hubtfx_contract.json"),
    "contract_bad_channels": (lambda m: (m / "hubtfx_contract.json").write_text(
        '{"image_size": [32, 32], "channels": "rgb"}'), "channels must be a positive integer"),
}


@pytest.fixture
def module_copy(tiny_module, tmp_path) -> Path:
    copy = tmp_path / "module"
    shutil.copytree(tiny_module, copy)
    return copy


def test_a_complete_module_has_no_problem(module_copy):
    assert integrity.find_problem(str(module_copy)) is None


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_each_damage_is_named(module_copy, damage):
    apply, phrase = DAMAGES[damage]
    apply(module_copy)
    problem = integrity.find_problem(str(module_copy))
    assert problem is not None and phrase in problem, problem


def test_missing_folder_and_a_file_are_named(module_copy, tmp_path):
    assert integrity.find_problem(str(tmp_path / "nowhere")) == "does not exist"
    assert "is a file" in integrity.find_problem(str(module_copy / "saved_model.pb"))


def test_a_module_without_a_contract_is_complete(module_copy):
    os.remove(module_copy / "hubtfx_contract.json")  # Third-party modules have none: inferred later.
    assert integrity.find_problem(str(module_copy)) is None
