"""The feature keys of hubtfx's examples, before and after Transform.

Raw features, one value each, as ImageFolderExampleGen writes them and schemas/schema.pbtxt (images) and
schemas/text_schema.pbtxt (texts) declare them (a test checks that they agree):
  IMAGE_KEY       bytes  images: the original file bytes (decoded later by Transform)
  TEXT_KEY        bytes  texts: the text, UTF-8 (tokenized later by Transform)
  LABEL_KEY       int64  class id, index into the label map's classes
  LABEL_NAME_KEY  bytes  class name (the class folder's name)
  FILENAME_KEY    bytes  path relative to the class-folder root, e.g. b"daisy/1.jpg"; also the split key

Transformed features, as Transform's preprocessing_fn returns them and the Trainer and the exported model read
them: TRANSFORMED_IMAGE_KEY (float32 [h, w, c], what the module expects) for images, TEXT_MODEL_INPUT_KEYS (int64
[seq_length] each, TF Hub's BERT encoder inputs) for texts, and TRANSFORMED_LABEL_KEY.
"""
IMAGE_KEY = "image_raw"
TEXT_KEY = "text"
LABEL_KEY = "label"
LABEL_NAME_KEY = "label_name"
FILENAME_KEY = "filename"
RAW_FEATURE_KEYS = (IMAGE_KEY, LABEL_KEY, LABEL_NAME_KEY, FILENAME_KEY)

TRANSFORMED_IMAGE_KEY = "image"
# The names TF Hub's BERT preprocessors give their outputs and encoders their inputs
# (https://www.tensorflow.org/hub/common_saved_model_apis/text#transformer-encoders).
TEXT_MODEL_INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")
# The default header names of a table of texts' text and label columns (ExampleGen's table.py, the config's
# text_column / label_column).
DEFAULT_TEXT_COLUMN = "text"
DEFAULT_LABEL_COLUMN = "label"

# Transform passes the label through unchanged, under its raw name.
TRANSFORMED_LABEL_KEY = LABEL_KEY
