"""End to end for texts: the real local pipeline (LocalDagRunner, Beam, TFT, TFMA, SQLite MLMD) with the bundled
all-MiniLM-L6-v2 pair on generated notes in class folders, with bad files among them."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from hubtfx.components.common import artifact_files, feature_keys
from hubtfx.components.trainer import exported_model
from hubtfx.pipeline import local_runner
from hubtfx.pipeline.config import ConfigError, PipelineConfig
from hubtfx.pipeline.datasets import sample_texts
from hubtfx.pipeline.hub_modules import builder, module_resolution
from hubtfx.pipeline.reporting import report
from hubtfx.pipeline.serving import predict

BAD_FILES = {"cooking/latin1.txt": "café".encode("latin-1"), "sports/blank.txt": b" \n",
             "weather/notes.md": b"# not a .txt file"}


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, network_guard):
    work = tmp_path_factory.mktemp("text_run")
    data = str(work / "data")
    sample_texts.generate_texts(data, texts_per_class=20, seed=3)
    for relative, content in BAD_FILES.items():
        with open(os.path.join(data, relative), "wb") as f:
            f.write(content)
    config = PipelineConfig(data_root=data, output_dir=str(work / "out"), modality="text", stage2_epochs=1,
                            min_validation_examples=2, stage2_significance=1.0, batch_size=8).validate()
    module = module_resolution.resolve(config)
    attempts = []
    with network_guard(attempts):
        summary = local_runner.run_local(config, module)
    return config, module, summary, attempts


def test_a_text_model_is_trained_blessed_and_pushed_with_the_bundled_pair(text_run):
    config, module, summary, attempts = text_run
    assert attempts == []
    assert (module.modality, module.seq_length) == ("text", 128)
    assert module.preprocessor.endswith(builder.module_name(builder.TEXT_PREPROCESSOR))
    assert summary.blessed and summary.pushed and summary.eval_accuracy >= 0.9
    assert summary.files_seen == 63 and summary.examples_written == 60
    assert set(summary.stage_outcomes) == {"stage1", "stage2"}
    assert "all-MiniLM-L6-v2" in summary.render()
    facts = exported_model.read_facts(summary.pushed_path)
    assert (facts.modality, facts.seq_length, facts.image_size) == ("text", 128, None)
    assert list(facts.class_names) == list(sample_texts.CLASS_NAMES)


def test_bad_text_files_are_skipped_with_their_reason_and_every_good_one_is_kept(text_run):
    config, _, summary, _ = text_run
    assert len(summary.skipped) == len(BAD_FILES)
    skipped = {item["file"]: item["reason"] for item in summary.skipped}
    assert "not UTF-8" in skipped["cooking/latin1.txt"]
    assert "empty text" in skipped["sports/blank.txt"]
    assert ".txt" in skipped["weather/notes.md"]


def test_stage2_fine_tunes_the_top_transformer_layers_by_name(text_run):
    config, _, _, _ = text_run
    [history_file] = glob.glob(os.path.join(config.pipeline_root, "**", artifact_files.TRAINING_HISTORY_FILE),
                               recursive=True)
    with open(history_file) as f:
        history = json.load(f)
    unfrozen = history["stages"]["stage2"]["unfrozen_variables"]
    assert unfrozen and {name.split("/")[0] for name in unfrozen} == {"layer_04", "layer_05"}


def test_the_raw_text_signature_equals_the_examples_signature_and_screens_bad_input(text_run):
    _, _, summary, _ = text_run
    model = tf.saved_model.load(summary.pushed_path)
    texts = [b"The striker scored a penalty in the second half.", b"Heavy rain and a cold front tonight.",
             "Caf\u00e9 cr\u00e8me \u2615 with fresh basil".encode("utf-8"), b""]

    def example(text):
        feature = {feature_keys.TEXT_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[text]))}
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    by_example = model.signatures[exported_model.EXAMPLES_SIGNATURE](examples=tf.constant([example(t) for t in texts]))
    by_text = model.signatures[exported_model.DEFAULT_SIGNATURE](text=tf.constant(texts))
    np.testing.assert_allclose(by_text["probabilities"].numpy(), by_example["probabilities"].numpy(), atol=1e-6)
    assert [n.decode() for n in by_text["class_name"].numpy()[:2]] == ["sports", "weather"]
    mixed = model.signatures[exported_model.DEFAULT_SIGNATURE](text=tf.constant([b"\xff broken", texts[0]]))
    assert mixed["error"].numpy()[0].decode().startswith("not UTF-8") and mixed["class_id"].numpy()[0] == -1
    np.testing.assert_allclose(mixed["probabilities"].numpy()[1], by_text["probabilities"].numpy()[0], atol=1e-6)


def test_the_exported_model_tokenizes_with_the_preprocessing_model_itself(text_run):
    _, module, summary, _ = text_run
    model = tf.saved_model.load(summary.pushed_path)
    texts = tf.constant(["Un café, s'il vous plaît!", "WORD " * 200])
    preprocessor = hub.load(module.preprocessor)
    expected = preprocessor.bert_pack_inputs([preprocessor.tokenize(texts)], tf.constant(module.seq_length))
    # The Transform layer's signature takes every raw feature; only the text's reaches the tokenizer.
    blank = tf.fill([2, 1], "")
    inside = model.tft_layer({feature_keys.TEXT_KEY: tf.reshape(texts, [-1, 1]), feature_keys.FILENAME_KEY: blank,
                              feature_keys.LABEL_NAME_KEY: blank, feature_keys.LABEL_KEY: tf.zeros([2, 1], tf.int64)})
    for key in feature_keys.TEXT_MODEL_INPUT_KEYS:
        np.testing.assert_array_equal(inside[key].numpy(), expected[key].numpy())


def test_predict_scores_text_files_and_command_line_texts(text_run, tmp_path):
    _, _, summary, _ = text_run
    good, bad = tmp_path / "note.txt", tmp_path / "bad.txt"
    good.write_text("Thunderstorms and hail with strong wind this afternoon.", encoding="utf-8")
    bad.write_bytes(b"\xff\xfe")
    results = predict.predict_files(summary.pushed_path, [str(good), str(bad)],
                                    texts=["The goalkeeper saved a penalty in the final."])
    assert [r.class_name for r in results] == ["sports", "weather", None]
    assert results[0].file.startswith("text 1: The goalkeeper") and "not UTF-8" in results[2].error


def test_texts_are_refused_by_an_image_model(finished_run):
    _, _, summary = finished_run
    with pytest.raises(ConfigError, match="--text needs a text model"):
        predict.predict_files(summary.pushed_path, [], texts=["hello"])


def test_the_report_shows_misclassified_texts_as_escaped_snippets(text_run):
    _, _, summary, _ = text_run
    with open(summary.report_path, encoding="utf-8") as f:
        html = f.read()
    assert "all-MiniLM" in html or "minilm" in html
    assert 'class="thumb"' not in html  # no image thumbnails for a text model


def test_modality_and_module_must_agree(tiny_module):
    with pytest.raises(ConfigError, match="takes image inputs"):
        module_resolution.resolve(PipelineConfig(hub_handle=tiny_module, modality="text").validate())
    with pytest.raises(ConfigError, match="modality must be one of"):
        PipelineConfig(modality="audio").validate()
