"""The curated schemas (data files, which cannot import the keys) declare exactly the raw feature keys."""
import os

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from hubtfx import schemas
from hubtfx.components.common import feature_keys
from hubtfx.pipeline.pipeline import CURATED_SCHEMAS


@pytest.mark.parametrize("modality, raw_key", [("image", feature_keys.IMAGE_KEY), ("text", feature_keys.TEXT_KEY)])
def test_each_curated_schema_declares_its_modalitys_raw_feature_keys(modality, raw_key):
    assert os.path.dirname(CURATED_SCHEMAS[modality]) == schemas.SCHEMA_DIR
    with open(CURATED_SCHEMAS[modality], encoding="utf-8") as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    expected = [raw_key if key == feature_keys.IMAGE_KEY else key for key in feature_keys.RAW_FEATURE_KEYS]
    assert sorted(feature.name for feature in schema.feature) == sorted(expected)
