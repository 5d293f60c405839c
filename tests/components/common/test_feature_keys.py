"""The curated schema (a data file, which cannot import the keys) declares exactly the raw feature keys."""
import os

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from hubtfx import schemas
from hubtfx.components.common import feature_keys


def test_the_curated_schema_declares_the_raw_feature_keys():
    with open(os.path.join(schemas.SCHEMA_DIR, "schema.pbtxt"), encoding="utf-8") as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    assert sorted(feature.name for feature in schema.feature) == sorted(feature_keys.RAW_FEATURE_KEYS)
