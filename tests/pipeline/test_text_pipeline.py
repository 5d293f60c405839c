"""End to end for texts: the real local pipeline (LocalDagRunner, Beam, TFT, TFMA, SQLite MLMD) with the bundled
all-MiniLM-L6-v2 pair on generated notes in class folders, with bad files among them."""
import glob
import json
import os
import shutil

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


def test_the_report_names_the_text_module_and_shows_no_image_thumbnails(text_run):
    _, _, summary, _ = text_run
    with open(summary.report_path, encoding="utf-8") as f:
        html = f.read()
    assert "all-MiniLM" in html or "minilm" in html
    assert 'class="thumb"' not in html  # no image thumbnails for a text model


def test_modality_and_module_must_agree(tiny_module, module_cache, tmp_path):
    with pytest.raises(ConfigError, match="takes image inputs"):
        module_resolution.resolve(PipelineConfig(hub_handle=tiny_module, modality="text").validate())
    with pytest.raises(ConfigError, match="modality must be one of"):
        PipelineConfig(modality="audio").validate()
    encoder = builder.build_module(builder.TEXT_ENCODER, cache_dir=module_cache)
    with pytest.raises(ConfigError, match="--image-size applies to image modules"):
        module_resolution.resolve(PipelineConfig(hub_handle=encoder, image_size=(224, 224)).validate())
    bare = tmp_path / "encoder"  # a text encoder without its contract (as fetched from tfhub.dev)
    shutil.copytree(encoder, bare, ignore=shutil.ignore_patterns("hubtfx_contract.json"))
    with pytest.raises(ConfigError, match="A text module needs a hubtfx_contract.json"):
        module_resolution.resolve(PipelineConfig(hub_handle=str(bare), modality="text").validate())


def test_a_text_run_without_data_generates_sample_notes_not_images(tmp_path):
    config = PipelineConfig(output_dir=str(tmp_path), modality="text")
    assert config.resolved_data_root == os.path.join(str(tmp_path), "sample_texts")
    assert PipelineConfig(output_dir=str(tmp_path)).resolved_data_root == os.path.join(str(tmp_path), "sample_data")


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A table of the notes (semicolons, quotes and commas in texts), with bad rows, through the whole pipeline."""
    work = tmp_path_factory.mktemp("table_run")
    written = sample_texts.generate_texts(str(work / "notes"), texts_per_class=12, seed=5)
    rows = [(open(path, encoding="utf-8").read().strip(), name) for name, paths in written.items() for path in paths]
    rows[0] = ('She said "salt; then pepper", twice. ' + rows[0][0], rows[0][1])
    lines = ["body,topic"] + ['"' + text.replace('"', '""') + '",' + label for text, label in rows]
    lines += ['"   ",sports', "a text without its label,", '"Bad" quote,weather']  # lines 38-40
    table = work / "notes.csv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = PipelineConfig(data_root=str(table), output_dir=str(work / "out"), modality="text", stage2_epochs=0,
                            text_column="body", label_column="topic").validate()
    return config, local_runner.run_local(config, module_resolution.resolve(config)), rows


def test_a_table_of_texts_trains_blesses_and_reports_its_bad_rows_by_line(table_run):
    config, summary, rows = table_run
    assert summary.blessed and summary.pushed
    assert (summary.files_seen, summary.examples_written, summary.input_unit) == (len(rows) + 3, len(rows), "rows")
    skipped = {item["row"]: item["reason"] for item in summary.skipped}
    assert sorted(skipped) == [38, 39, 40]
    assert "empty text" in skipped[38] and "empty label" in skipped[39] and "quote" in skipped[40]
    assert "rows" in summary.render()
    model = tf.saved_model.load(summary.pushed_path)
    scored = model.signatures[exported_model.DEFAULT_SIGNATURE](text=tf.constant([rows[0][0].encode("utf-8")]))
    assert scored["class_name"].numpy()[0].decode() == rows[0][1]
