"""The `hubtfx` command as a user meets it: help, config precedence, clear errors, and the main job itself."""
import logging
import os
import subprocess
import sys

import pytest

from hubtfx.pipeline import config as config_lib
from hubtfx.pipeline.cli import commands, flags


def test_run_help_documents_every_config_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        commands.main(["run", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for field in config_lib.user_fields():
        assert "--" + field.name.replace("_", "-") in help_text, field.name
    assert "[default: 0.2]" in help_text  # validation_fraction shows its default


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("stage2_epochs: 4\nbatch_size: 8\n")
    args = commands.build_parser().parse_args(["run", "--config", str(yaml_file), "--batch-size", "4", "--no-augment"])
    config = flags.config_from_args(args)
    assert (config.stage2_epochs, config.batch_size, config.augment) == (4, 4, False)


@pytest.mark.parametrize("argv, message", [
    (["run", "--stage2-epochs", "zero"], "stage2_epochs"),
    (["run", "--feature-levels", "some"], "feature_levels must be one of"),
    (["run", "--eval-percent", "100"], "eval_percent"),
    (["run", "--config", "/nonexistent.yaml"], "Cannot read config file"),
])
def test_bad_values_exit_2_with_the_reason(argv, message, capsys, tmp_path):
    assert commands.main(argv + ["--output", str(tmp_path)]) == commands.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_logging_configured_twice_still_shows_component_lines_once_prefixed():
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
    commands.configure_logging(verbose=False)
    commands.configure_logging(verbose=False)  # basicConfig(force=True) replaces the root's handlers: add ours after
    lines = _Lines()
    logging.getLogger().addHandler(lines)
    try:
        absl_logging.info("Component %s is running.", "Trainer")
        absl_logging.info("Using deployment config: %s", "...")
    finally:
        logging.getLogger().removeHandler(lines)
    assert lines.lines == ["[pipeline] Component Trainer is running."]


def test_empty_data_root_fails_before_any_beam_job(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    code = commands.main(["run", "--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "out")])
    assert code == commands.EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "out" / "metadata.sqlite").exists()


def test_single_class_is_refused_with_a_fix(tmp_path, sample_root, capsys):
    data = tmp_path / "one_class"
    (data / "circle").mkdir(parents=True)
    for name in os.listdir(os.path.join(sample_root, "circle"))[:3]:
        (data / "circle" / name).write_bytes(open(os.path.join(sample_root, "circle", name), "rb").read())
    assert commands.main(["run", "--data-root", str(data), "--output", str(tmp_path / "out")]) == commands.EXIT_USAGE
    assert "class" in capsys.readouterr().err.lower()


def test_main_job_trains_the_real_efficientnet_and_pushes(tmp_path, sample_root, feature_vector_module):
    """`hubtfx run` in a fresh process, as the README's main command runs it, on the real pretrained backbone."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "hubtfx.pipeline.cli", "run", "--data-root", sample_root, "--output", str(out),
         "--min-validation-examples", "2", "--stage2-epochs", "1", "--accuracy-threshold", "0"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    assert result.returncode == commands.EXIT_OK, result.stdout[-3000:] + result.stderr[-3000:]
    assert feature_vector_module in result.stdout  # the bundled module, from the session cache
    assert "Data: 40 files in 5 classes" in result.stdout
    assert "BLESSED" in result.stdout and "pushed to " + str(out / "serving" / "hubtfx") in result.stdout
    assert "[stage 1] train features" in result.stderr and "[pipeline] Component Trainer is running" in result.stderr


def test_sample_data_says_what_it_wrote_in_one_line_without_listing_files(tmp_path, capsys):
    root = tmp_path / "images"
    assert commands.main(["sample-data", str(root), "--images-per-class", "2"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    written = sum(len(files) for _, _, files in os.walk(root))
    assert f": {written} images (circle 2, cross 2, square 2, star 2, triangle 2)" in line
    assert "formats " in line and ".png" not in line and ".jpg" not in line
