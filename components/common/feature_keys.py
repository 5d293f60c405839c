"""The feature keys of hubtfx's examples, before and after Transform.

Raw features, one value each, as ImageFolderExampleGen writes them and schemas/schema.pbtxt declares them (a test
checks that the two agree):
  IMAGE_KEY       bytes  the original file bytes (decoded later by Transform)
  LABEL_KEY       int64  class id, index into the label map's classes
  LABEL_NAME_KEY  bytes  class name (the class folder's name)
  FILENAME_KEY    bytes  path relative to the class-folder root, e.g. b"daisy/1.jpg"; also the split key

Transformed features, as Transform's preprocessing_fn returns them and the Trainer and the exported model read
them: TRANSFORMED_IMAGE_KEY (float32 [h, w, c], what the module expects) and TRANSFORMED_LABEL_KEY.
"""
IMAGE_KEY = "image_raw"
LABEL_KEY = "label"
LABEL_NAME_KEY = "label_name"
FILENAME_KEY = "filename"
RAW_FEATURE_KEYS = (IMAGE_KEY, LABEL_KEY, LABEL_NAME_KEY, FILENAME_KEY)

TRANSFORMED_IMAGE_KEY = "image"
# Transform passes the label through unchanged, under its raw name.
TRANSFORMED_LABEL_KEY = LABEL_KEY
