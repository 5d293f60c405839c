"""`TextModality`: UTF-8 texts for TF Hub text encoders that come with their BERT preprocessing model.

A text module is a pair (https://www.tensorflow.org/hub/common_saved_model_apis/text): a preprocessing SavedModel
(strings -> `input_word_ids`, `input_mask`, `input_type_ids`, int32 [batch, seq_length]) and the encoder it was
trained with. Transform runs the preprocessing model (tokenizer and packing, in-graph); the Transform graph, with
the preprocessing model inside it, is embedded in the exported model, so training and serving tokenize with the same
graph. Nothing in this module tokenizes by itself.

The model's input is the dict of the three int tensors; before the encoder, `trim_to_longest` cuts the batch to its
longest text (the padding beyond it changes no output: padded keys are masked out of attention and out of the mean
pooling). It pays when every text of a batch is short (see the README, "Texts", for a measurement).
"""
from __future__ import annotations

import codecs
import html
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import markupsafe
import tensorflow as tf
# Registers the tokenizer ops (NormalizeUTF8, WordpieceTokenizeWithOffsets, ...) that a text Transform graph and a
# text model hold: without them no process can load either.
import tensorflow_text  # noqa: F401  pylint: disable=unused-import

from hubtfx.components.common import feature_keys
from hubtfx.components.modality.base import Modality

# A text file larger than this is refused at ingestion: the model reads at most seq_length wordpieces (a few hundred
# words), so a file of a megabyte is a book or a data dump in the wrong folder, not an example.
MAX_TEXT_BYTES = 1 << 20
# File name suffixes read as texts (lower case); other files in a class folder are skipped, and reported.
TEXT_SUFFIXES = (".txt", ".text")
# The report shows at most this many characters of a text.
SNIPPET_CHARS = 280
# Transform's custom_config keys (pipeline.create_components fills them from the module's contract).
PREPROCESSOR_KEY = "preprocessor"
SEQ_LENGTH_KEY = "seq_length"
TEXT_INPUT = "text"  # the raw-text signature's input name
# Why a text input is not scored by the raw-text signature (the `error` output), and at ingestion.
NOT_UTF8 = "not UTF-8 text"
EMPTY = "empty text (nothing but white space)"


def text_refusal(content: bytes) -> Optional[str]:
    """Why `content` is not a usable text example, or None: over MAX_TEXT_BYTES, not UTF-8, or blank."""
    if len(content) > MAX_TEXT_BYTES:
        return (f"text of {len(content):,} bytes, over the {MAX_TEXT_BYTES:,}-byte limit (the model reads only its "
                "first words): split it into one example per file, or remove it from the class folder")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        return (f"{NOT_UTF8} (invalid byte at offset {e.start}): save the file as UTF-8 (e.g. "
                "`iconv -f latin1 -t utf-8`)")
    if not text.strip():
        return EMPTY
    return None


def strip_byte_order_mark(content: bytes) -> bytes:
    """UTF-8 bytes without a leading byte order mark (Windows editors write one; it is not part of the text)."""
    return content[len(codecs.BOM_UTF8):] if content.startswith(codecs.BOM_UTF8) else content


def trim_to_longest(inputs: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The encoder inputs (int [batch, seq_length] each) cut to the batch's longest text (its most unmasked tokens),
    as int32. The encoder's outputs for the kept tokens and its mean pooling are the same as with the padding."""
    mask = tf.cast(inputs["input_mask"], tf.int32)
    longest = tf.maximum(tf.reduce_max(tf.reduce_sum(mask, axis=1)), 1)
    return {key: tf.cast(inputs[key], tf.int32)[:, :longest] for key in feature_keys.TEXT_MODEL_INPUT_KEYS}


class TextModality(Modality):
    """Texts: the raw feature is the text's UTF-8 bytes; the model input is TF Hub's BERT encoder input dict
    {input_word_ids, input_mask, input_type_ids}: int64 [batch, seq_length] each out of Transform.

    Transform's custom_config gives the preprocessing model's folder (`preprocessor`) and `seq_length`.
    """

    name = "text"
    raw_feature = feature_keys.TEXT_KEY
    serving_input = TEXT_INPUT
    accepted_description = f"UTF-8 text file ({', '.join(TEXT_SUFFIXES)}, not empty, at most {MAX_TEXT_BYTES:,} bytes)"

    # ---- ExampleGen ------------------------------------------------------------------------------------------
    def file_refusal(self, relative_path: str) -> Optional[str]:
        if os.path.splitext(relative_path)[1].lower() in TEXT_SUFFIXES:
            return None
        return (f"not a text file: only {', '.join(TEXT_SUFFIXES)} files are read as texts; rename it if it is one "
                "(UTF-8), or move it out of the class folder")

    def parse_file(self, content: bytes) -> Tuple[Optional[bytes], Optional[str]]:
        """(the text's UTF-8 bytes without a byte order mark, None), or (None, text_refusal's reason)."""
        content = strip_byte_order_mark(content)
        reason = text_refusal(content)
        return (None, reason) if reason is not None else (content, None)

    # ---- Transform -------------------------------------------------------------------------------------------
    def preprocess(self, raw: tf.Tensor, custom_config: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
        """Texts string [batch] -> {input_word_ids, input_mask, input_type_ids}: int64 [batch, seq_length] each
        (int64: the dtype tf.Example and TFT's schemas know), from the module's preprocessing model."""
        import tensorflow_hub as hub  # pylint: disable=import-outside-toplevel
        import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
        path, seq_length = custom_config[PREPROCESSOR_KEY], int(custom_config[SEQ_LENGTH_KEY])
        # Tracked, so that TFT saves the preprocessing model's tables and functions into the Transform graph.
        preprocessor = tft.make_and_track_object(lambda: hub.load(path), name="text_preprocessor")
        packed = preprocessor.bert_pack_inputs([preprocessor.tokenize(raw)], tf.constant(seq_length))
        return {key: tf.cast(tf.ensure_shape(packed[key], [None, seq_length]), tf.int64)
                for key in feature_keys.TEXT_MODEL_INPUT_KEYS}

    def model_input(self, transformed: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return {key: transformed[key] for key in feature_keys.TEXT_MODEL_INPUT_KEYS}

    def backbone_input(self, model_input):
        return trim_to_longest(model_input)

    def input_description(self, transformed_feature_spec: Mapping[str, Any]) -> Dict[str, Any]:
        return {"seq_length": int(transformed_feature_spec["input_word_ids"].shape[0])}

    def check_transformed(self, transformed_feature_spec: Mapping[str, Any], contract) -> Optional[str]:
        missing = [k for k in feature_keys.TEXT_MODEL_INPUT_KEYS if k not in transformed_feature_spec]
        if missing:
            return (f"Transform produces {sorted(transformed_feature_spec)}, not the text encoder's inputs "
                    f"{list(feature_keys.TEXT_MODEL_INPUT_KEYS)}")
        return None

    # ---- Trainer ---------------------------------------------------------------------------------------------
    def augment(self, inputs: Any, seed: int) -> Any:
        """No augmentation: word dropping or swapping changes what a short text means."""
        del seed
        return inputs

    # ---- serving ---------------------------------------------------------------------------------------------
    def screen_serving_inputs(self, raw: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """Texts string [batch] -> (errors string [batch]: "" or NOT_UTF8; the texts, invalid ones replaced by "").
        An empty text is scored (the model sees only [CLS] [SEP]) as any other."""
        valid = _is_valid_utf8(raw)
        return tf.where(valid, "", NOT_UTF8), tf.where(valid, raw, "")

    # ---- report ----------------------------------------------------------------------------------------------
    def render_example(self, raw: bytes, alt: str) -> str:
        """A text -> `<blockquote class="snippet" title=...>` with its first SNIPPET_CHARS characters, escaped."""
        text = raw.decode("utf-8", errors="replace")
        snippet = " ".join(text.split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[:SNIPPET_CHARS].rstrip() + "\u2026"
        return markupsafe.Markup(f'<blockquote class="snippet" title="{html.escape(str(alt), quote=True)}">'
                                 f'{html.escape(snippet)}</blockquote>')

    # ---- predict ---------------------------------------------------------------------------------------------
    def read_input(self, path: str) -> Tuple[Optional[bytes], Optional[str]]:
        """A local text file -> (its text, None), or (None, why not: unreadable, too large, not UTF-8, blank)."""
        from hubtfx.components.modality.base import read_file_bytes  # pylint: disable=import-outside-toplevel
        content, reason = read_file_bytes(path)
        if content is None:
            return None, reason
        return self.parse_file(content)



def _is_valid_utf8(raw: tf.Tensor) -> tf.Tensor:
    """bool [batch]: whether each string is valid UTF-8 (transcoding it, invalid bytes replaced, changes nothing)."""
    return tf.equal(tf.strings.unicode_transcode(raw, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD,
                                                 replace_control_characters=False), raw)
