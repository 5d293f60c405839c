"""The text modality: which files are texts, what is refused and why, the preprocessing model inside a real TFT
Transform, the encoder fed trimmed batches, the raw-text signature's screening and the report's snippets."""
import shutil
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from hubtfx.components.common import feature_keys
from hubtfx.components.modality import registry
from hubtfx.components.modality import text as text_lib
from hubtfx.components.transform import preprocessing
from hubtfx.pipeline.hub_modules import builder

SEQ_LENGTH = 24
TEXTS = ["Heavy rain tomorrow, then sunshine.", "Café au lait ☕ à Paris", "一二三 emoji 🤖 done", "word " * 60, ""]


@pytest.fixture(scope="module")
def text_pair(module_cache):
    encoder = builder.build_module(builder.TEXT_ENCODER, cache_dir=module_cache)
    return encoder, builder.module_dir_for(builder.TEXT_PREPROCESSOR, module_cache)


@pytest.fixture(scope="module")
def modality():
    return registry.modality_named("text")


def test_the_registry_knows_text_and_its_raw_feature_and_signature_input(modality):
    assert isinstance(modality, text_lib.TextModality)
    assert (modality.raw_feature, modality.serving_input) == (feature_keys.TEXT_KEY, "text")


@pytest.mark.parametrize("path, read", [("love/1.txt", True), ("love/A.TXT", True), ("x/notes.text", True),
                                        ("x/readme.md", False), ("x/photo.jpg", False), ("x/noext", False)])
def test_only_text_files_are_read(modality, path, read):
    reason = modality.file_refusal(path)
    assert (reason is None) == read
    if not read:
        assert ".txt" in reason and "rename" in reason


def test_parse_file_keeps_good_texts_exactly_and_says_why_it_refuses_the_rest(modality):
    assert modality.parse_file("  Été\r\nline two\n".encode("utf-8")) == ("  Été\r\nline two\n".encode("utf-8"), None)
    assert modality.parse_file(b"\xef\xbb\xbfwith a BOM") == (b"with a BOM", None)
    raw, reason = modality.parse_file("café".encode("latin-1"))
    assert raw is None and "not UTF-8" in reason and "offset 3" in reason and "iconv" in reason
    assert modality.parse_file(b" \n\t ") == (None, text_lib.EMPTY)
    assert modality.parse_file(b"\xef\xbb\xbf") == (None, text_lib.EMPTY)
    raw, reason = modality.parse_file(b"a" * (text_lib.MAX_TEXT_BYTES + 1))
    assert raw is None and "limit" in reason
    assert modality.parse_file(b"a" * text_lib.MAX_TEXT_BYTES)[1] is None


def _transform(preprocessor: str, texts):
    config = {preprocessing.MODALITY_KEY: "text", text_lib.PREPROCESSOR_KEY: preprocessor,
              text_lib.SEQ_LENGTH_KEY: SEQ_LENGTH}
    spec = {feature_keys.TEXT_KEY: tf.io.FixedLenFeature([1], tf.string),
            feature_keys.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}
    data = [{feature_keys.TEXT_KEY: [t.encode("utf-8")], feature_keys.LABEL_KEY: [i]} for i, t in enumerate(texts)]
    out_dir = tempfile.mkdtemp()
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(), force_tf_compat_v1=False):
        (transformed, _), transform_fn = ((data, tft.DatasetMetadata.from_feature_spec(spec))
                                          | tft_beam.AnalyzeAndTransformDataset(
                                              lambda inputs: preprocessing.preprocessing_fn(inputs, config)))
        _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
    return transformed, tft.TFTransformOutput(out_dir)


def test_transform_runs_the_preprocessing_model_itself_and_its_graph_works_without_it(text_pair, tmp_path):
    _, preprocessor_dir = text_pair
    copy = str(tmp_path / "preprocess")  # deleted after Transform: the saved graph must not need the module folder
    shutil.copytree(preprocessor_dir, copy)
    transformed, output = _transform(copy, TEXTS)
    shutil.rmtree(copy)
    expected = hub.load(preprocessor_dir).bert_pack_inputs(
        [hub.load(preprocessor_dir).tokenize(tf.constant(TEXTS))], tf.constant(SEQ_LENGTH))
    for key in feature_keys.TEXT_MODEL_INPUT_KEYS:
        np.testing.assert_array_equal(np.stack([row[key] for row in transformed]), expected[key].numpy())
        assert output.transformed_feature_spec()[key] == tf.io.FixedLenFeature([SEQ_LENGTH], tf.int64)
    # The saved Transform graph (what the Trainer and the exported model run) gives the same ids.
    layer = output.transform_features_layer()
    again = layer({feature_keys.TEXT_KEY: tf.constant([[t.encode("utf-8")] for t in TEXTS])})
    np.testing.assert_array_equal(again["input_word_ids"].numpy(), expected["input_word_ids"].numpy())
    assert transformed[3]["input_mask"].sum() == SEQ_LENGTH  # truncated, not dropped
    assert transformed[4]["input_mask"].sum() == 2  # an empty text is [CLS] [SEP]


def test_trimming_a_batch_to_its_longest_text_changes_no_encoder_output(text_pair):
    encoder_dir, preprocessor_dir = text_pair
    preprocessor, encoder = hub.load(preprocessor_dir), hub.load(encoder_dir)
    packed = preprocessor.bert_pack_inputs([preprocessor.tokenize(tf.constant(TEXTS[:3]))], tf.constant(64))
    trimmed = text_lib.trim_to_longest(packed)
    longest = int(packed["input_mask"].numpy().sum(axis=1).max())
    assert trimmed["input_word_ids"].shape == (3, longest) and longest < 64
    full, cut = encoder(packed)["pooled_output"], encoder(trimmed)["pooled_output"]
    np.testing.assert_allclose(cut.numpy(), full.numpy(), atol=2e-5)


def test_the_serving_screen_refuses_only_invalid_utf8(modality):
    raw = tf.constant([b"fine", b"\xff\xfe broken", "keeps \ufffd as text".encode("utf-8"), b""])
    errors, safe = modality.screen_serving_inputs(raw)
    assert [e.decode() for e in errors.numpy()] == ["", text_lib.NOT_UTF8, "", ""]
    assert safe.numpy().tolist() == [b"fine", b"", "keeps \ufffd as text".encode("utf-8"), b""]


def test_report_snippets_are_escaped_and_shortened(modality):
    html = modality.render_example(("<script>alert(1)</script>  " + "long words " * 60).encode("utf-8"), 'alt "q"')
    assert "<script>" not in html and "&lt;script&gt;" in html and 'title="alt &quot;q&quot;"' in html
    assert html.count("long words") < 60 and "\u2026" in html
    assert modality.render_example("café".encode("latin-1"), "x")  # not UTF-8: shown with replacement chars


def test_predict_reads_text_files_as_ingestion_does(modality, tmp_path):
    good, bad = tmp_path / "a.txt", tmp_path / "b.txt"
    good.write_bytes(b"\xef\xbb\xbfhello")
    bad.write_bytes(b"\xff")
    assert modality.read_input(str(good)) == (b"hello", None)
    assert "not UTF-8" in modality.read_input(str(bad))[1]
    assert "cannot read" in modality.read_input(str(tmp_path / "missing.txt"))[1]
