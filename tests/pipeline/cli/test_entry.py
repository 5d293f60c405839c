"""The console script's first line is hubtfx's own: TensorFlow's CUDA and oneDNN notices are silenced before
TensorFlow is imported (checked in fresh processes, as a user runs `hubtfx`)."""
import os
import re
import subprocess
import sys
import warnings

import pytest

from hubtfx.pipeline.cli import entry

TF_NOISE = re.compile(r"cuda|cudnn|cufft|cublas|onednn", re.IGNORECASE)
CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "hubtfx")


def _hubtfx(*args):
    """`hubtfx ARGS` with stdout and stderr interleaved as a terminal shows them, TF_CPP_MIN_LOG_LEVEL unset."""
    command = [CONSOLE_SCRIPT] if os.path.exists(CONSOLE_SCRIPT) else [sys.executable, "-m", "hubtfx.pipeline.cli"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(command + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**env, "TF_USE_LEGACY_KERAS": "1"}, timeout=600)


@pytest.mark.parametrize("args, code, first_line", [
    (["--help"], 0, "usage: hubtfx "),
    (["run", "--data-root", "/nonexistent", "--output", "{tmp}"], 2, "hubtfx: error: input_base '/nonexistent'"),
])
def test_the_first_line_is_hubtfx_and_no_tensorflow_notice_is_printed(args, code, first_line, tmp_path):
    result = _hubtfx(*[arg.format(tmp=tmp_path) for arg in args])
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == code, result.stdout[-3000:]
    assert lines and lines[0].startswith(first_line), result.stdout[:3000]
    assert not [line for line in lines if TF_NOISE.search(line)], result.stdout[:3000]


def test_the_entry_point_imports_nothing_heavy_before_quieting_tensorflow():
    probe = "import sys, hubtfx.pipeline.cli.entry; print(sorted(m for m in ('tensorflow', 'tfx') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("argv, verbose", [
    (["--verbose", "run"], True), (["--verb", "run"], True), (["run", "--verbose"], False),
    (["--", "--verbose"], False), (["--help"], False), ([], False),
])
def test_verbose_is_read_from_the_top_level_flags_only(argv, verbose):
    assert entry.verbose_requested(argv) is verbose


@pytest.mark.parametrize("user_level, verbose, level", [(None, False, "3"), (None, True, "0"), ("1", False, "1")])
def test_the_log_level_is_3_unless_verbose_or_set_by_the_user(user_level, verbose, level, monkeypatch):
    if user_level is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", user_level)
    with warnings.catch_warnings():  # quiet_imports changes the process's filters; keep them out of other tests
        entry.quiet_imports(verbose)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == level
