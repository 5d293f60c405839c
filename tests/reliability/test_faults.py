"""Faults: a killed run, two runs on one output folder, a diverging loss, an output folder that cannot be written."""
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from hubtfx.components.pusher import serving
from hubtfx.pipeline import local_runner, output_folder
from hubtfx.pipeline.cli import commands
from hubtfx.pipeline.config import PipelineConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_RUN_TIMEOUT = 600


def _run_flags(data_root, output_dir, module):
    return ["--data-root", data_root, "--output-dir", output_dir, "--hub-handle", module,
            "--min-validation-examples", "2", "--stage2-epochs", "1", "--accuracy-threshold", "0", "--batch-size", "8",
            "--stage2-significance", "1"]


def _start_run(flags):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "hubtfx.pipeline.cli", "run", *flags], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when(process, line_marker: str) -> str:
    """SIGKILLs `process` as soon as it logs `line_marker`; returns its output up to then."""
    seen, deadline = [], time.monotonic() + _RUN_TIMEOUT
    for line in process.stdout:
        seen.append(line)
        if line_marker in line:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return "".join(seen)
        assert time.monotonic() < deadline, "timed out waiting for " + line_marker
    pytest.fail(f"the run ended (exit {process.wait()}) before logging {line_marker!r}:\n{''.join(seen)}")


def _executions_by_component(metadata_path):
    store = metadata_store.MetadataStore(local_runner.metadata_connection_config(
        PipelineConfig(metadata_path=metadata_path)))
    by_component = {}
    for execution in store.get_executions():
        component = store.get_execution_types_by_id([execution.type_id])[0].name.split(".")[-1]
        by_component.setdefault(component, []).append(execution.last_known_state)
    return by_component


def _assert_only_complete_blessed_versions(serving_dir):
    for version in serving.served_versions(serving_dir):
        folder = os.path.join(serving_dir, str(version))
        for required in ("saved_model.pb", "variables/variables.index", serving.PUSH_RECORD_FILE):
            assert os.path.isfile(os.path.join(folder, required)), (folder, required)


# The Trainer's first own log line. TFX's "Component Trainer is running" line cannot be awaited: it is missing
# from non-verbose output once Transform has run (see RELIABILITY.md).
_TRAINER_STARTED = "Training a 5-class head"
_TRANSFORM_STARTED = "Component Transform is running"
State = metadata_store_pb2.Execution


def _rerun_to_completion(flags, output):
    """Runs the same command again; asserts it pushed exactly one complete version; returns MLMD's states."""
    serving_dir = os.path.join(output, "serving", PipelineConfig.model_name)
    assert serving.served_versions(serving_dir) == [], "a killed run must not have pushed"
    finished = _start_run(flags)
    log = finished.communicate(timeout=_RUN_TIMEOUT)[0]
    assert finished.returncode == commands.EXIT_OK, log
    assert len(serving.served_versions(serving_dir)) == 1
    _assert_only_complete_blessed_versions(serving_dir)
    return _executions_by_component(os.path.join(output, "metadata.sqlite"))


def test_killed_during_trainer_the_same_command_completes_reusing_the_cache(tmp_path, sample_root, tiny_module):
    output = str(tmp_path / "out")
    flags = _run_flags(sample_root, output, tiny_module)
    _kill_when(_start_run(flags), _TRAINER_STARTED)

    executions = _rerun_to_completion(flags, output)

    assert executions["ImageFolderExampleGen"] == [State.COMPLETE, State.CACHED], executions
    assert executions["Transform"] == [State.COMPLETE, State.CACHED], executions
    assert executions["Trainer"][-1] == State.COMPLETE, executions


@pytest.mark.slow
def test_killed_during_transform_then_trainer_the_same_command_completes(tmp_path, sample_root, tiny_module):
    output = str(tmp_path / "out")
    flags = _run_flags(sample_root, output, tiny_module)
    _kill_when(_start_run(flags), _TRANSFORM_STARTED)
    _kill_when(_start_run(flags), _TRAINER_STARTED)

    executions = _rerun_to_completion(flags, output)

    assert executions["ImageFolderExampleGen"][1:] == [State.CACHED, State.CACHED], executions
    # Transform was killed in the first run, so the second ran it; the third reused that.
    assert executions["Transform"][-2:] == [State.COMPLETE, State.CACHED], executions
    assert executions["Trainer"][-1] == State.COMPLETE, executions


def test_a_second_run_on_the_same_output_fails_fast_without_touching_ml_metadata(tmp_path, sample_root,
                                                                                 tiny_module, capsys):
    output = str(tmp_path / "out")
    with output_folder.exclusive_lock(output, local_runner.RUN_LOCK_FILE) as locked:
        assert locked
        started = time.monotonic()
        code = commands.main(["run", *_run_flags(sample_root, output, tiny_module)])
    assert code == commands.EXIT_USAGE
    assert f"another hubtfx run is using {output} (pid {os.getpid()}); wait for it" in capsys.readouterr().err
    assert time.monotonic() - started < 60
    assert not os.path.exists(os.path.join(output, "metadata.sqlite"))
    with output_folder.exclusive_lock(output, local_runner.RUN_LOCK_FILE) as locked:
        assert locked, "the failed run must not keep the lock"


def test_a_diverging_stage_2_is_rolled_back_and_the_run_says_so(finished_run, tmp_path, sample_root,
                                                                 tiny_module, capsys):
    """Reuses a copy of a finished run's output, so only the Trainer and what follows run again (stage 2 at
    learning rate 1e3). The collapsed fine-tuned model must never reach the Evaluator: stage 1 is exported."""
    config, _, _ = finished_run
    output = str(tmp_path / "out")
    shutil.copytree(config.output_dir, output, ignore=shutil.ignore_patterns(local_runner.RUN_LOCK_FILE))

    code = commands.main(["run", *_run_flags(sample_root, output, tiny_module), "--stage2-learning-rate", "1000"])

    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code in (commands.EXIT_OK, commands.EXIT_NOT_BLESSED), text
    assert "stage2: rolled back to stage 1:" in text and "lower --stage2-learning-rate" in text, text
    assert "kept stage1" in text and "Traceback" not in text


def test_an_output_folder_that_cannot_be_created_is_named_in_the_error(tmp_path, sample_root, tiny_module,
                                                                       capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    output = str(blocker / "out")
    assert commands.main(["run", *_run_flags(sample_root, output, tiny_module)]) == commands.EXIT_USAGE
    assert f"hubtfx: error: cannot write to the output folder {output}: Not a directory" in capsys.readouterr().err


def test_a_full_disk_is_reported_before_anything_runs(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(output_folder.OutputFolderError,
                       match=f"cannot write to the output folder {tmp_path}: No space left on device"):
        output_folder.check_writable(str(tmp_path))

    usage = namedtuple("usage", "total used free")
    monkeypatch.undo()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 5 * 2**20, 5 * 2**20))
    with pytest.raises(output_folder.OutputFolderError, match=f"{tmp_path} has only 5 MB free"):
        output_folder.check_writable(str(tmp_path))


def test_the_lock_holder_pid_survives_a_second_opener(tmp_path):
    with output_folder.exclusive_lock(str(tmp_path), "x.lock") as first:
        with output_folder.exclusive_lock(str(tmp_path), "x.lock") as second:
            assert first and not second
        assert output_folder.holder_pid(str(tmp_path), "x.lock") == os.getpid()
