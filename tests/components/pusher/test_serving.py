"""Atomic, de-duplicated pushes into the TF Serving layout, including a push killed mid-copy."""
import os
import signal
import subprocess
import sys
import time

import pytest

from hubtfx.components.pusher import serving

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _fake_model(folder, payload=b"weights", files=1, file_bytes=0):
    """A SavedModel-shaped folder; `files` x `file_bytes` of variables make the copy take a while."""
    os.makedirs(os.path.join(folder, "variables"), exist_ok=True)
    with open(os.path.join(folder, "saved_model.pb"), "wb") as f:
        f.write(b"graph")
    for i in range(files):
        with open(os.path.join(folder, "variables", f"variables.data-{i:05d}"), "wb") as f:
            f.write(payload + os.urandom(file_bytes))
    return str(folder)


def test_push_writes_a_numeric_version_with_its_fingerprint(tmp_path):
    model = _fake_model(tmp_path / "model")
    result = serving.push_model(model, str(tmp_path / "serving"))
    assert result.pushed and result.version.isdigit()
    assert sorted(os.listdir(tmp_path / "serving")) == [result.version]
    assert serving.served_fingerprint(result.path) == serving.model_fingerprint(model)
    assert serving.model_files(result.path) == serving.model_files(model)


def test_the_same_model_is_not_pushed_twice_but_a_different_one_is(tmp_path):
    base = str(tmp_path / "serving")
    first = serving.push_model(_fake_model(tmp_path / "a"), base)
    again = serving.push_model(_fake_model(tmp_path / "a_copy"), base)  # same content, other folder
    assert not again.pushed and again.version == first.version and "identical" in again.reason
    other = serving.push_model(_fake_model(tmp_path / "b", payload=b"retrained"), base)
    assert other.pushed and int(other.version) > int(first.version)
    assert serving.served_versions(base) == [int(first.version), int(other.version)]


def test_versions_increase_even_within_one_second():
    assert serving.next_version([], now=100.5) == 100
    assert serving.next_version([100], now=100.9) == 101
    assert serving.next_version([5], now=100.0) == 100


def test_a_model_pushed_by_another_tool_is_compared_by_content(tmp_path):
    base = tmp_path / "serving"
    model = _fake_model(tmp_path / "model")
    _fake_model(base / "7")  # no push record: the fingerprint is computed
    assert not serving.push_model(model, str(base)).pushed


def test_a_push_killed_mid_copy_leaves_no_partial_version_and_the_next_push_cleans_up(tmp_path):
    model = _fake_model(tmp_path / "model", files=400, file_bytes=256 * 1024)  # ~100 MB: a copy takes a while
    base = tmp_path / "serving"
    code = f"from components.pusher import serving; serving.push_model({model!r}, {str(base)!r})"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT)
    try:
        _wait_until_copying(base, process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    entries = os.listdir(base)
    assert not [e for e in entries if e.isdigit()], f"a partial version is visible: {entries}"
    temp = [e for e in entries if e.startswith(serving.TEMP_PREFIX)]
    assert temp, "the kill should have happened mid-copy"
    assert len(os.listdir(base / temp[0] / "variables")) < 400

    result = serving.push_model(model, str(base))
    assert result.pushed
    assert os.listdir(base) == [result.version]
    assert serving.model_files(result.path) == serving.model_files(model)


def _wait_until_copying(base, process, timeout=60.0):
    """Returns once the push has copied some variables into its temp folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("the push finished before it could be killed; make the fake model bigger")
        temp = [e for e in os.listdir(base) if e.startswith(serving.TEMP_PREFIX)] if os.path.isdir(base) else []
        variables = base / temp[0] / "variables" if temp else None
        if variables is not None and variables.is_dir() and len(os.listdir(variables)) >= 20:
            return
        time.sleep(0.002)
    pytest.fail("the push never started copying")
