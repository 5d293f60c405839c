"""ImageFolderExampleGen: a TFX FileBasedExampleGen for the image-folder layout (one sub-folder per class).

    example_gen = ImageFolderExampleGen(input_base="gs://bucket/flowers", use_spans=True, eval_percent=20,
                                        label_map_path="gs://bucket/flowers_label_map.json")

Outputs an Examples artifact with 'train' and 'eval' splits (gzipped TFRecords of tf.Examples with
image_raw, label, label_name, filename), plus label_map.json and ingestion_report.json at its root; see
executor.py. For texts (modality="text") the data root may instead be a .csv/.tsv table, or a folder (or, with
spans, span-<N> folders) holding one; `text_column` and `label_column` name its columns (table.py).
Span handling follows TFX: with use_spans the input pattern is 'span-{SPAN}/*/*', which the
driver resolves to the latest span (or the one `range_config` selects) and records as the artifact's span;
the driver lists folders instead of globbing them (ImageFolderDriver), so a data root may hold '[', '*', '?'.
"""
from __future__ import annotations

from typing import Optional

from tfx.components.example_gen import component as example_gen_component
from tfx.components.example_gen import driver as example_gen_driver
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types import channel as channel_lib
from tfx.types.component_spec import ExecutionParameter

from hubtfx.components.common import feature_keys
from hubtfx.components.example_gen import executor, layout, table
from hubtfx.components.modality import registry as modalities


class ImageFolderExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGenSpec plus the optional path of the persistent class-id map and the modality."""

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        executor.LABEL_MAP_PATH_KEY: ExecutionParameter(type=str, optional=True),
        executor.MODALITY_KEY: ExecutionParameter(type=str, optional=True),
        executor.TEXT_COLUMN_KEY: ExecutionParameter(type=str, optional=True),
        executor.LABEL_COLUMN_KEY: ExecutionParameter(type=str, optional=True),
    }


class ImageFolderDriver(example_gen_driver.FileBasedDriver):
    """TFX's file-based driver with span, fingerprint and resolved pattern found by listing folders.

    TFX's own input processor globs `input_base`, so a data root such as "photos [2024]" would match no span and
    fingerprint no file (and ExampleGen would then be served from cache however the data changed): see
    layout.ImageFolderInputProcessor. Layout errors are raised here as layout.DataLayoutError.
    """

    def get_input_processor(self, splits, range_config=None, input_base_uri=None):
        return layout.ImageFolderInputProcessor(input_base_uri, splits, range_config)


class ImageFolderExampleGen(example_gen_component.FileBasedExampleGen):
    """Ingests `<input_base>/<class_name>/<image>` (or `<input_base>/span-<N>/<class_name>/<image>`), or for texts
    a table `<input_base>` = `<table>.csv|.tsv` (or `<input_base>/<table>.csv`, `<input_base>/span-<N>/<table>.csv`).
    """

    SPEC_CLASS = ImageFolderExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = ImageFolderDriver

    def __init__(
        self,
        input_base: str,
        use_spans: bool = False,
        eval_percent: int = 20,
        label_map_path: Optional[str] = None,
        range_config: Optional[range_config_pb2.RangeConfig] = None,
        modality: str = modalities.DEFAULT_MODALITY,
        text_column: str = table.DEFAULT_TEXT_COLUMN,
        label_column: str = table.DEFAULT_LABEL_COLUMN,
    ):
        """Builds the component.

        Args:
          input_base: folder (any filesystem tf.io.gfile supports) with one sub-folder per class, or with
            span-<N> folders that each have one sub-folder per class. For the text modality also a .csv/.tsv
            table of texts with a header row, or a folder without sub-folders holding one (span-<N> folders
            holding one each): one example per row, keyed and split by a hash of its text (table.py).
          use_spans: read `<input_base>/span-<N>/`: the latest N, or the span `range_config` selects.
          eval_percent: share of images in the 'eval' split, 1..99; an image's split is a hash of its
            path relative to the class-folder root, so it stays the same across runs and spans.
          label_map_path: JSON file {"classes": [...]} that keeps class ids stable across runs: existing
            classes keep their ids, new classes are appended; created if missing, updated after each
            successful run. Without it, ids are the sorted class names.
          range_config: TFX RangeConfig selecting the span (static_range with start == end, or
            rolling_range with num_spans=1); needs use_spans.
          modality: the module contract's modality (hubtfx.components.modality), which decides which files are
            examples and what of them is stored.
          text_column: when input_base is (or holds) a .csv/.tsv table of texts, the header name of its text column.
          label_column: the header name of the table's label column (its values are the class names).

        Raises:
          UnknownModalityError: hubtfx has no modality of that name.
          ValueError: a blank column name, or the same for text and label.
        """
        if not 0 < eval_percent < 100:
            raise ValueError(f"eval_percent must be between 1 and 99, got {eval_percent}")
        if range_config is not None and not use_spans:
            raise ValueError("range_config selects a span folder: set use_spans=True (layout span-<N>/<class>/...)")
        modalities.modality_named(modality)
        if not text_column.strip() or not label_column.strip() or text_column.strip() == label_column.strip():
            raise ValueError(f"text_column {text_column!r} and label_column {label_column!r} must be two different "
                             "column names")
        spec = ImageFolderExampleGenSpec(
            input_base=input_base,
            input_config=example_gen_pb2.Input(
                splits=[example_gen_pb2.Input.Split(name="single_split", pattern=layout.split_pattern(use_spans))]
            ),
            output_config=make_output_config(eval_percent),
            range_config=range_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            label_map_path=label_map_path,
            # Unset for images, so that an image pipeline's ExampleGen keeps the properties, and with them the
            # cache key, it had before modalities existed.
            modality=None if modality == modalities.DEFAULT_MODALITY else modality,
            # Unset at their defaults, for the same reason.
            text_column=None if text_column == table.DEFAULT_TEXT_COLUMN else text_column,
            label_column=None if label_column == table.DEFAULT_LABEL_COLUMN else label_column,
            examples=channel_lib.Channel(type=standard_artifacts.Examples),
        )
        # FileBasedExampleGen.__init__ would build its own spec without label_map_path, so the base
        # component initialiser is called directly with ours.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)


def make_output_config(eval_percent: int) -> example_gen_pb2.Output:
    """'train'/'eval' hash buckets in percent, hashed on the relative file path."""
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=100 - eval_percent),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=eval_percent),
            ],
            partition_feature_name=feature_keys.FILENAME_KEY,
        )
    )
