"""The exported model and `hubtfx predict` on the bad-input corpus: per-image errors, the batch always survives."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from hubtfx.components.trainer import exported_model
from hubtfx.pipeline.cli import commands


def _example(image_bytes: bytes) -> bytes:
    feature = {"image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def model(finished_run):
    return tf.saved_model.load(finished_run[2].pushed_path)


@pytest.fixture(scope="module")
def readable(corpus):
    """(relative path, bytes, expected serving error) of every corpus file that can be read."""
    return [(path, corpus.read(path), outcome.serve) for path, outcome in sorted(corpus.cases.items())
            if os.path.exists(os.path.join(corpus.root, path))]


def test_one_batch_of_the_whole_corpus_gets_a_verdict_per_image(model, readable):
    outputs = model.signatures[exported_model.DEFAULT_SIGNATURE](image_bytes=tf.constant([data for _, data, _ in readable]))
    errors = [e.decode() for e in outputs["error"].numpy()]
    for (path, _, expected), error, class_id, probabilities in zip(
            readable, errors, outputs["class_id"].numpy(), outputs["probabilities"].numpy()):
        if expected:
            assert error.startswith(expected), (path, error)
            assert class_id == -1 and not probabilities.any(), path
        else:
            assert error == "", (path, error)
            assert class_id >= 0 and probabilities.sum() == pytest.approx(1.0, abs=1e-5), path


def test_good_images_score_the_same_alone_in_a_bad_batch_and_through_serving_examples(model, readable):
    """Both signatures share the Transform graph: EXIF, CMYK, 16-bit, palette and GIF images included."""
    good = [data for _, data, expected in readable if not expected]
    with_bad = model.signatures[exported_model.DEFAULT_SIGNATURE](image_bytes=tf.constant([data for _, data, _ in readable]))
    in_bad_batch = with_bad["probabilities"].numpy()[[not expected for _, _, expected in readable]]
    alone = np.concatenate([model.signatures[exported_model.DEFAULT_SIGNATURE](image_bytes=tf.constant([data]))["probabilities"]
                            for data in good])
    by_example = model.signatures[exported_model.EXAMPLES_SIGNATURE](examples=tf.constant([_example(d) for d in good]))
    np.testing.assert_allclose(in_bad_batch, alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_example["probabilities"].numpy(), alone, rtol=1e-5, atol=1e-6)


def test_hubtfx_predict_reports_each_bad_file_and_scores_the_rest(finished_run, corpus, capsys):
    config, _, _ = finished_run
    code = commands.main(["predict", "--output", config.output_dir, "--json", corpus.root])
    lines = {os.path.relpath(line["file"], corpus.root): line
             for line in map(json.loads, capsys.readouterr().out.splitlines())}
    assert code == commands.EXIT_FAILED
    for path, outcome in corpus.cases.items():
        line = lines[path]
        if outcome.serve:
            assert line["error"].startswith(outcome.serve), (path, line)
        else:
            assert "error" not in line and 0.0 < line["probability"] <= 1.0, (path, line)
    # predict walks folders itself: nested files are scored, hidden ones are not.
    assert "circle/nested/deep.jpg" in lines and "circle/.hidden.jpg" not in lines


def test_a_palette_bmp_scores_exactly_like_its_png_twin(model, corpus):
    """Issue 13 case 01: the colour table is applied (TF alone scores the grey palette indices)."""
    outputs = model.signatures["serving_bytes"](image_bytes=tf.constant(
        [corpus.read("circle/palette.bmp"), corpus.read("circle/palette twin.png")]))
    assert [e.decode() for e in outputs["error"].numpy()] == ["", ""]
    probabilities = outputs["probabilities"].numpy()
    assert np.abs(probabilities[0] - probabilities[1]).max() < 1e-4
