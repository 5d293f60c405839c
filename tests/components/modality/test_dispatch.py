"""The stages ask the registry, not the image code: a tiny second modality registered here flows through
ingestion, Transform's preprocessing_fn, predict and the report's rendering of examples."""
import html
import os
import types

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from hubtfx.components.example_gen import executor as executor_lib
from hubtfx.components.example_gen.layout import scan_layout
from hubtfx.components.modality import registry
from hubtfx.components.modality.base import Modality
from hubtfx.components.trainer import exported_model
from hubtfx.components.transform import preprocessing
from hubtfx.pipeline.reporting import report
from hubtfx.pipeline.serving import predict

CLASSES = ("even", "odd")


class FakeText(Modality):
    """Short UTF-8 notes in .txt files; the model input is their length."""

    name = "fake-text"
    raw_feature = "note_raw"
    serving_input = "notes"
    accepted_description = "UTF-8 .txt note"

    def file_refusal(self, relative_path):
        return None if relative_path.endswith(".txt") else "not a .txt note"

    def parse_file(self, content):
        try:
            return content.decode("utf-8").strip().encode("utf-8"), None
        except UnicodeDecodeError:
            return None, "not UTF-8"

    def preprocess(self, raw, custom_config):
        return {"length": tf.strings.length(raw, unit="UTF8_CHAR")}

    def augment(self, inputs, seed):
        return inputs

    def render_example(self, raw, alt):
        return f'<blockquote title="{html.escape(alt)}">{html.escape(raw.decode("utf-8"))}</blockquote>'

    def read_input(self, path):
        with open(path, "rb") as f:
            return self.parse_file(f.read())


@pytest.fixture
def fake():
    modality = FakeText()
    registry.register(modality)
    yield modality
    registry.unregister(modality.name)


class _NoteModel(tf.Module):
    """Predicts "even" for a note of even length, "odd" otherwise."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="notes")])
    def serve(self, notes):
        class_id = tf.cast(tf.strings.length(notes, unit="UTF8_CHAR") % 2, tf.int64)
        return {"probabilities": tf.one_hot(class_id, 2), "class_id": class_id,
                "class_name": tf.gather(tf.constant(CLASSES), class_id)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=exported_model.EXAMPLES_INPUT)])
    def serve_examples(self, examples):
        notes = tf.io.parse_example(examples, {"note_raw": tf.io.FixedLenFeature([], tf.string)})["note_raw"]
        return self.serve(notes)


def _save_model(path):
    model = _NoteModel()
    tf.saved_model.save(model, path, signatures={
        "serving_default": model.serve.get_concrete_function(),
        exported_model.EXAMPLES_SIGNATURE: model.serve_examples.get_concrete_function()})
    return path


def test_ingestion_reads_files_through_the_contracts_modality(fake, tmp_path):
    files = {"even/ab.txt": b" ab \n", "even/bad.txt": b"\xff\xfe", "odd/abc.txt": b"abc", "odd/abc.png": b"abc"}
    for relative_path, content in files.items():
        os.makedirs(tmp_path / os.path.dirname(relative_path), exist_ok=True)
        (tmp_path / relative_path).write_bytes(content)

    def check_examples(examples):
        stored = {e.features.feature["filename"].bytes_list.value[0]: e.features.feature for e in examples}
        assert set(stored) == {b"even/ab.txt", b"odd/abc.txt"}
        assert stored[b"even/ab.txt"]["note_raw"].bytes_list.value == [b"ab"]  # what parse_file made of it
        assert "image_raw" not in stored[b"even/ab.txt"]

    def check_skipped(records):
        assert sorted((r["file"], r["reason"]) for r in records) == [
            ("even/bad.txt", "not UTF-8"), ("odd/abc.png", "not a .txt note")]

    with test_pipeline.TestPipeline() as pipeline:
        outputs = pipeline | executor_lib.ReadImageFolder(scan_layout(str(tmp_path)), list(CLASSES), fake.name)
        assert_that(outputs.examples, check_examples, label="examples")
        assert_that(outputs[executor_lib.SKIPPED_TAG], check_skipped, label="skipped")


def test_transform_preprocesses_with_the_configured_modality(fake):
    outputs = preprocessing.preprocessing_fn(
        {"note_raw": tf.constant([["ab"], ["héllo"]]), "label": tf.constant([[0], [1]], tf.int64)},
        {"modality": fake.name})
    assert outputs["length"].numpy().tolist() == [2, 5]
    assert outputs["label"].numpy().tolist() == [0, 1]


def test_predict_reads_and_scores_files_the_models_modality_way(fake, tmp_path):
    model_dir = _save_model(str(tmp_path / "model"))
    (tmp_path / "four.txt").write_text("four")
    (tmp_path / "three.txt").write_text("  abc\n")  # parse_file strips it: length 3
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    files = [str(tmp_path / name) for name in ("four.txt", "three.txt", "latin1.txt", "photo.jpg")]

    results = [p.as_dict() for p in predict.predict_files(model_dir, files)]

    assert [(os.path.basename(r["file"]), r.get("class_name"), r.get("error")) for r in results] == [
        ("four.txt", "even", None), ("three.txt", "odd", None), ("latin1.txt", None, "not UTF-8"),
        ("photo.jpg", None, "not a .txt note")]


def test_a_model_of_an_unregistered_modality_is_refused_clearly(tmp_path):
    model_dir = _save_model(str(tmp_path / "model"))
    with pytest.raises(registry.UnknownModalityError, match=r"`image_bytes` \(image\).*'serving_default'"):
        predict.predict_files(model_dir, [])


def _write_eval_split(examples_uri, notes):
    """ExampleGen's eval split (gzipped TFRecords) of the fake modality's examples."""
    os.makedirs(os.path.join(examples_uri, "Split-eval"))
    with tf.io.TFRecordWriter(os.path.join(examples_uri, "Split-eval", "data.gz"), "GZIP") as writer:
        for index, (note, label) in enumerate(notes):
            writer.write(executor_lib.make_example(note.encode("utf-8"), label, CLASSES[label],
                                                   f"{CLASSES[label]}/{index}.txt", "note_raw").SerializeToString())


def test_the_report_scores_and_renders_examples_the_models_modality_way(fake, tmp_path):
    model_uri = str(tmp_path / "Model")
    _save_model(os.path.join(model_uri, "Format-Serving"))
    examples_uri = str(tmp_path / "Examples")
    # Labels against the model's rule: "odd" (length 3) and "<&>" (length 3) are wrong, "ok" is right.
    _write_eval_split(examples_uri, [("odd", 0), ("ok", 0), ("<&>", 0)])

    found = report.misclassified_examples(examples_uri, model_uri)

    assert [(m.filename, m.label_name, m.predicted_name) for m in found] == [
        ("even/0.txt", "even", "odd"), ("even/2.txt", "even", "odd")]
    assert found[1].example_html == '<blockquote title="Misclassified: even/2.txt">&lt;&amp;&gt;</blockquote>'
    facts = types.SimpleNamespace(misclassified=found,
                                  evaluation=types.SimpleNamespace(confusion=np.array([[1, 2], [0, 0]])))
    section = report.misclassified_section(facts)
    assert found[1].example_html in section and "<img" not in section


def test_the_report_scores_a_bounded_number_of_eval_examples_and_says_so(fake, tmp_path):
    model_uri = str(tmp_path / "Model")
    _save_model(os.path.join(model_uri, "Format-Serving"))
    examples_uri = str(tmp_path / "Examples")
    # 40 right ("ok"), then one wrong ("odd"): the wrong one lies beyond the first scoring batch.
    _write_eval_split(examples_uri, [("ok", 0)] * 40 + [("odd", 0)])
    assert report.misclassified_examples(examples_uri, model_uri, max_scored=1) == []
    assert [m.filename for m in report.misclassified_examples(examples_uri, model_uri)] == ["even/40.txt"]
    facts = types.SimpleNamespace(misclassified=[],
                                  evaluation=types.SimpleNamespace(confusion=np.array([[40, 1], [0, 0]])))
    section = report.misclassified_section(facts)
    assert "gets 1 eval examples wrong, none of them among the first" in section
    assert "got every eval example right" not in section


def test_the_report_reuses_misclassified_examples_found_for_the_same_artifacts(fake, tmp_path, monkeypatch):
    model_uri = str(tmp_path / "Model")
    _save_model(os.path.join(model_uri, "Format-Serving"))
    examples_uri = str(tmp_path / "Examples")
    _write_eval_split(examples_uri, [("odd", 0), ("ok", 0)])
    cache_dir = str(tmp_path / "reports")
    found = report.cached_misclassified_examples(cache_dir, examples_uri, model_uri)
    assert [m.filename for m in found] == ["even/0.txt"]
    scored = []
    real_scoring = report.misclassified_examples
    monkeypatch.setattr(report, "misclassified_examples", lambda *args: scored.append(args) or real_scoring(*args))

    assert report.cached_misclassified_examples(cache_dir, examples_uri, model_uri) == found
    assert not scored  # the same artifacts: nothing loaded or scored again

    # A model re-created at the same URI (ML Metadata's ids start over with a new database) is scored again.
    saved_model = os.path.join(model_uri, "Format-Serving", "saved_model.pb")
    stat = os.stat(saved_model)
    os.utime(saved_model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert report.cached_misclassified_examples(cache_dir, examples_uri, model_uri) == found
    assert len(scored) == 1

    # An unreadable cache is recomputed, not trusted or fatal, and rewritten whole.
    with open(os.path.join(cache_dir, report.MISCLASSIFIED_CACHE), "w", encoding="utf-8") as f:
        f.write('{"key": ')
    assert report.cached_misclassified_examples(cache_dir, examples_uri, model_uri) == found
    assert len(scored) == 2
    assert report.cached_misclassified_examples(cache_dir, examples_uri, model_uri) == found
    assert len(scored) == 2
    assert os.listdir(cache_dir) == [report.MISCLASSIFIED_CACHE]  # no temporary file left


def test_a_report_whose_cache_cannot_be_written_still_gets_its_examples(fake, tmp_path):
    model_uri = str(tmp_path / "Model")
    _save_model(os.path.join(model_uri, "Format-Serving"))
    examples_uri = str(tmp_path / "Examples")
    _write_eval_split(examples_uri, [("odd", 0)])
    not_a_folder = tmp_path / "reports"
    not_a_folder.write_text("a file where the reports folder should be")
    found = report.cached_misclassified_examples(str(not_a_folder), examples_uri, model_uri)
    assert [m.filename for m in found] == ["even/0.txt"]
