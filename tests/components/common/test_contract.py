"""Module contracts: JSON round trip (without TensorFlow) and inference from a SavedModel signature."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hubtfx.components.common.contract import (
    CONTRACT_FILENAME,
    ContractError,
    ModuleContract,
    read_contract,
    write_contract,
)

_REPO_ROOT = Path(__file__).resolve().parents[3]


def _contract():
    return ModuleContract(image_size=(224, 192), output_dim=1280, kind="feature_vector", name="m",
                          resize_method="bicubic", source="somewhere", license_note="Apache-2.0")


def test_contract_round_trips_through_json(tmp_path):
    path = write_contract(str(tmp_path), _contract())
    assert os.path.basename(path) == CONTRACT_FILENAME
    assert read_contract(str(tmp_path)) == _contract()
    assert json.loads(Path(path).read_text())["image_size"] == [224, 192]


def test_identical_contracts_write_identical_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Path(write_contract(str(tmp_path / "a"), _contract())).read_bytes()
    b = Path(write_contract(str(tmp_path / "b"), _contract())).read_bytes()
    assert a == b


def test_reading_json_contract_does_not_import_tensorflow(tmp_path):
    write_contract(str(tmp_path), _contract())
    code = (
        "import sys; from hubtfx.components.common.contract import read_contract; "
        f"c = read_contract({str(tmp_path)!r}); assert c.image_size == (224, 192); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=_REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"image_size": (224,)}, "image_size"),
        ({"image_size": (224, 224), "kind": "segmentation"}, "kind"),
        ({"image_size": (224, 224), "value_range": (1.0, 0.0)}, "value_range"),
    ],
)
def test_invalid_contracts_are_rejected(fields, message):
    with pytest.raises(ContractError, match=message):
        ModuleContract(**fields)


def test_unknown_json_keys_are_rejected(tmp_path):
    (tmp_path / CONTRACT_FILENAME).write_text(json.dumps({"image_size": [8, 8], "imagesize": [9, 9]}))
    with pytest.raises(ContractError, match="imagesize"):
        read_contract(str(tmp_path))


def test_contract_is_inferred_from_serving_signature(tiny_module, tmp_path):
    copy = tmp_path / "third_party_module"
    shutil.copytree(tiny_module, copy)
    (copy / CONTRACT_FILENAME).unlink()

    contract = read_contract(str(copy))

    assert contract.image_size == (32, 32)
    assert contract.channels == 3
    assert contract.value_range == (0.0, 1.0)
    assert contract.output_dim == 16


def test_variable_size_module_without_contract_asks_for_explicit_size(tmp_path):
    import tensorflow as tf

    class VariableSize(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            return tf.reduce_mean(images, axis=[1, 2])

    module = VariableSize()
    tf.saved_model.save(module, str(tmp_path), signatures=module.__call__.get_concrete_function())
    with pytest.raises(ContractError, match="explicit image size"):
        read_contract(str(tmp_path))


def test_missing_module_is_reported(tmp_path):
    with pytest.raises(ContractError, match="not a SavedModel"):
        read_contract(str(tmp_path))
