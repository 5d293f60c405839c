"""`hubtfx predict` on the model a real local run pushed."""
import json
import os
import shutil

import pytest

from hubtfx.components.trainer import progress
from hubtfx.pipeline.cli import commands
from hubtfx.pipeline.serving import predict


@pytest.fixture(scope="module")
def images(tmp_path_factory, sample_root):
    """A folder with two good images, a zero-byte file and a text file named .jpg, plus a hidden file."""
    folder = tmp_path_factory.mktemp("predict")
    circles = sorted(os.listdir(os.path.join(sample_root, "circle")))
    shutil.copy(os.path.join(sample_root, "circle", next(f for f in circles if f.endswith(".jpg"))), folder / "a.jpg")
    shutil.copy(os.path.join(sample_root, "circle", next(f for f in circles if f.endswith(".png"))), folder / "b.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is text")
    (folder / ".hidden.jpg").write_text("ignored")
    return folder


def test_latest_version_is_the_highest_number(tmp_path):
    for version in ("9", "10", ".tmp-11", "notes"):
        (tmp_path / version).mkdir()
    assert predict.latest_version_dir(str(tmp_path)) == str(tmp_path / "10")


def test_no_pushed_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Run `hubtfx run` first"):
        predict.latest_version_dir(str(tmp_path / "missing"))


def test_json_lines_score_good_images_and_report_bad_ones(finished_run, images, capsys):
    config, _, _ = finished_run
    code = commands.main(["predict", "--output", config.output_dir, "--json", str(images)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_file = {os.path.basename(line["file"]): line for line in lines}
    assert set(by_file) == {"a.jpg", "b.png", "empty.jpg", "notes.jpg"}  # the hidden file is not listed
    scored = [line for line in lines if "error" not in line]
    assert len(scored) == 2
    for line in scored:
        assert set(line) >= {"file", "class_id", "class_name", "probability"}
        assert 0.0 < line["probability"] <= 1.0
    assert by_file["notes.jpg"]["error"] == "not an image: content is none of JPEG, PNG, GIF, BMP"
    assert by_file["empty.jpg"]["error"] == "empty input (0 bytes)"
    assert code == commands.EXIT_FAILED


def test_text_output_has_one_line_per_image(finished_run, images, capsys):
    config, _, _ = finished_run
    good = sorted(str(images / f) for f in os.listdir(images) if f[0] in "ab")
    assert commands.main(["predict", "--output", config.output_dir, *good]) == commands.EXIT_OK
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[0] for r in rows] == good
    assert all(len(r) == 4 and r[1].isdigit() for r in rows)


def test_predict_without_a_model_exits_2_with_a_message(tmp_path, images, capsys):
    assert commands.main(["predict", "--output", str(tmp_path), str(images)]) == commands.EXIT_USAGE
    assert "Run `hubtfx run` first" in capsys.readouterr().err


def test_progress_is_reported_for_every_file_once(finished_run, images):
    config, _, _ = finished_run
    files = predict.list_images([str(images)])
    done = []
    results = predict.predict_files(predict.latest_version_dir(config.push_base_dir), files, progress=done.append)
    assert sum(done) == len(files) == len(results) and len(done) >= 2  # the unreadable files, then a batch


@pytest.mark.parametrize("terminal", [True, False])
def test_a_progress_bar_on_a_terminal_only_and_the_same_results(terminal, images, monkeypatch, capsys):
    monkeypatch.setattr(progress, "bars_wanted", lambda: terminal)

    def scored(model_dir, files, progress, texts=()):  # pylint: disable=redefined-outer-name
        for _ in files:
            progress(1)
        return [predict.Prediction(file=f, class_id=0, class_name="circle", probability=0.5) for f in files]

    monkeypatch.setattr(predict, "predict_files", scored)
    assert commands.main(["predict", "--model", "/m", str(images)]) == commands.EXIT_OK
    out, err = capsys.readouterr()
    assert [line.split("\t")[1:] for line in out.splitlines()] == [["0", "circle", "0.5000"]] * 4
    if terminal:
        assert "Scoring" in err and "/4" in err
    else:
        assert err == "Model: /m\n"
