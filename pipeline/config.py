"""The single source of hubtfx's parameters.

`PipelineConfig` is filled from its defaults, then an optional YAML file, then command-line flags (see
`hubtfx.pipeline.cli.flags`, which derives its flags from the fields below so the two cannot drift apart).
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml

from hubtfx.components.common import artifact_files, feature_keys
from hubtfx.components.common.contract import TEXT_MODALITY
from hubtfx.components.modality import registry as modalities
from hubtfx.components.trainer.params import TrainingParams
from hubtfx.components.transform.policies import ASPECT_POLICIES
from hubtfx.pipeline import platform_names
from hubtfx.pipeline.errors import ConfigError

_TRAINING = TrainingParams()
DEFAULT_OUTPUT_DIR = "hubtfx_output"


def _field(default, help: str, group: str, **kwargs):  # pylint: disable=redefined-builtin
    return dataclasses.field(default=default, metadata={"help": help, "group": group, **kwargs})


@dataclasses.dataclass
class PipelineConfig:
    """Everything a user sets for a hubtfx run. Paths left empty are derived from `output_dir`.

    The backbone module is not part of it: `hub_modules.module_resolution.resolve(config)` turns `hub_handle`
    (and the `image_size` override) into a `ResolvedModule`, which is passed alongside the config.
    """

    # --- data ---
    data_root: str = _field("", "Image folder (<root>/<class>/*.jpg|png, or <root>/span-N/<class>/...). "
                                "Default: sample data generated under the output folder.", "data")
    use_spans: bool = _field(False, "Read span-<N> sub-folders and train on the latest span.", "data")
    span_window: int = _field(1, "With use_spans: train on the last N ingested spans (1: the latest only). "
                                 "Models are always evaluated on the latest span.", "data")
    eval_percent: int = _field(20, "Percent of images held out for evaluation (split by hash of path; a class "
                                   "with 2+ images always gets both training and eval images).", "data")
    text_column: str = _field(feature_keys.DEFAULT_TEXT_COLUMN, "Texts in a .csv/.tsv table (--data-root names the table, or a folder holding "
                                      "one): the header of the text column.", "data")
    label_column: str = _field(feature_keys.DEFAULT_LABEL_COLUMN, "Texts in a table: the header of the label column (its values are the class "
                                        "names).", "data")
    sample_images_per_class: int = _field(30, "Images (or, with --modality text, notes) per class when generating "
                                                 "the sample data.", "data")

    # --- backbone module ---
    hub_handle: str = _field("", "TF Hub module: local SavedModel folder, tfhub.dev/Kaggle URL or gs:// path. "
                                 "Default: the bundled module of the modality (built on first use): EfficientNet-"
                                 "Lite0's feature vector for images, the all-MiniLM-L6-v2 encoder for texts.",
                             "module")
    modality: str = _field("", "What the data is: 'image' or 'text'. Default: what the module's contract says "
                               "(image for the default module); with the default module, 'text' selects the "
                               "bundled text encoder. Never guessed from the files.", "module")
    image_size: Optional[Tuple[int, int]] = _field(
        None, "Input height and width for the module, e.g. 224,224. Default: the module's declared contract.",
        "module")
    aspect: str = _field("squash", "How images reach the module's input size: 'squash' resizes each side "
                                   "(shapes distort), 'crop' takes the largest centred box of the input's "
                                   "aspect ratio, 'pad' fits the whole image and pads with black.", "module")
    allow_unsafe_module_ops: bool = _field(
        False, "Use a module even if its graph contains file-system, process or Python-callback ops.", "module")

    # --- training (defaults: components.trainer.params.TrainingParams, the one definition) ---
    batch_size: int = _field(_TRAINING.batch_size, "Batch size of stage 2 and of the feature pass.", "training")
    cv_folds: int = _field(_TRAINING.cv_folds, "Stage 1: stratified cross-validation folds on the training "
                                               "features that choose the head's L2 strength and feature levels "
                                               "(at most; fewer above 2,000 training examples, 2 above 4,000, "
                                               "where more folds cost time and change nothing).",
                           "training")
    feature_levels: str = _field(_TRAINING.feature_levels, "Stage 1 features: 'auto' lets cross-validation choose "
                                 "between the module's feature vector and all its feature levels (pooled "
                                 "intermediate blocks, where the module has them); 'default' or 'all' forces one.",
                                 "training")
    class_weight: str = _field(_TRAINING.class_weight, "'balanced' weighs every class the same in the loss "
                                                       "whatever its image count; 'none' weighs every image the "
                                                       "same.", "training")
    dropout: float = _field(_TRAINING.dropout, "Dropout before the head during stage 2.", "training")
    fine_tune_blocks: str = _field(str(_TRAINING.fine_tune_blocks), "Stage 2: number of top backbone blocks to "
                                   "unfreeze; 0 skips stage 2, 'all' unfreezes the whole backbone.", "training")
    stage2_epochs: int = _field(_TRAINING.stage2_epochs, "Stage 2: most fine-tuning epochs (early stopping on "
                                                         "the validation slice usually ends it sooner).", "training")
    stage2_learning_rate: float = _field(_TRAINING.stage2_learning_rate, "Peak learning rate of stage 2 (Adam, "
                                                                         "warm-up then cosine decay).", "training")
    stage2_patience: int = _field(_TRAINING.stage2_patience, "Stage 2 epochs without an improvement (a lower "
                                                             "validation loss at no lower accuracy than stage 1's) "
                                                             "before stopping.", "training")
    validation_fraction: float = _field(_TRAINING.validation_fraction, "Share of each class's training images "
                                        "held out to judge stage 2 (never the eval split).", "training")
    min_validation_examples: int = _field(_TRAINING.min_validation_examples, "Stage 2 runs only when the "
                                          "validation slice holds at least this many images (fewer cannot tell "
                                          "whether fine-tuning helped).", "training")
    stage2_significance: float = _field(_TRAINING.stage2_significance, "Stage 2 replaces stage 1 only if, on "
                                        "the validation slice, it fixes more of stage 1's predictions than it "
                                        "breaks with a one-sided sign-test p-value at most this; 1 keeps any "
                                        "stage 2 with a lower validation loss.", "training")
    augment: bool = _field(_TRAINING.augment, "Random flip and crop during stage 2 only.", "training")
    seed: int = _field(_TRAINING.seed, "Random seed of every training choice (folds, validation slice, "
                                       "shuffling, augmentation).", "training")

    # --- evaluation ---
    accuracy_threshold: float = _field(0.5, "Minimum eval accuracy for a model to be blessed and pushed.",
                                       "evaluation")
    max_accuracy_drop: float = _field(0.0, "How much lower than the latest blessed model's eval accuracy a new "
                                           "model may be and still be blessed.", "evaluation")

    # --- outputs ---
    pipeline_name: str = _field("hubtfx", "Pipeline name (ML Metadata context, pipeline-root sub-folder).",
                                "output")
    model_name: str = _field("hubtfx", "Serving model name: models are pushed to <serving_dir>/<model_name>/.",
                             "output")
    output_dir: str = _field(DEFAULT_OUTPUT_DIR, "Folder for everything a local run writes.", "output")
    serving_dir: str = _field("", "TF Serving model base folder. Default: <output_dir>/serving.", "output")
    metadata_path: str = _field("", "SQLite ML Metadata file. Default: <output_dir>/metadata.sqlite.", "output")
    beam_workers: int = _field(1, "Local runs: Beam worker processes for ExampleGen, StatisticsGen, Transform and "
                                  "the Evaluator. 1 runs Beam in this process; N > 1 starts N worker processes "
                                  "(see README 'Scale' for what each costs).", "output")

    # --- cluster (hubtfx compile / schedule; `run` ignores these) ---
    image: str = _field("", "Container image every cluster step runs (built from kubeflow/Dockerfile), e.g. "
                            "us-docker.pkg.dev/PROJECT/REPO/hubtfx:1. Required by compile and schedule.", "cluster")
    gcp_project: str = _field("", "Google Cloud project for Vertex AI Pipelines and Dataflow.", "cluster")
    gcp_region: str = _field("us-central1", "Google Cloud region for Vertex AI Pipelines and Dataflow.", "cluster")
    dataflow_temp_location: str = _field("", "gs:// folder for Dataflow's temporary files. "
                                             "Default: <output_dir>/tmp/dataflow.", "cluster")
    dataflow_machine_type: str = _field("n1-standard-4", "Machine type of Dataflow workers (--target vertex).",
                                        "cluster")
    dataflow_max_workers: int = _field(4, "Maximum number of Dataflow workers per Beam step (--target vertex).",
                                       "cluster")
    trainer_gpu_type: str = _field(
        "", "Trainer GPU: a Vertex AI accelerator (NVIDIA_TESLA_T4, NVIDIA_L4, NVIDIA_TESLA_V100, "
            "NVIDIA_TESLA_A100, ...) for --target vertex, a Kubernetes resource name (nvidia.com/gpu) for "
            "--target kubeflow. Default: NVIDIA_TESLA_T4 / nvidia.com/gpu.", "cluster")
    trainer_gpu_count: int = _field(1, "GPUs for the Trainer; 0 trains on CPU.", "cluster")
    trainer_cpu: float = _field(8.0, "vCPUs for the Trainer (Vertex picks the smallest machine type that fits).",
                                "cluster")
    trainer_memory_gb: float = _field(30.0, "Memory in GB for the Trainer.", "cluster")

    # ------------------------------------------------------------------ derived paths
    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root", self.pipeline_name)

    @property
    def resolved_serving_dir(self) -> str:
        return self.serving_dir or os.path.join(self.output_dir, "serving")

    @property
    def resolved_metadata_path(self) -> str:
        return self.metadata_path or os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def resolved_data_root(self) -> str:
        """The data root, or the generated sample data's folder (images, or notes with modality text)."""
        sample = "sample_texts" if self.modality == TEXT_MODALITY else "sample_data"
        return self.data_root or os.path.join(self.output_dir, sample)

    @property
    def label_map_path(self) -> str:
        """Class ids persist here so that a new span with the same classes gets the same ids."""
        return os.path.join(self.output_dir, artifact_files.LABEL_MAP_FILE)

    @property
    def push_base_dir(self) -> str:
        return os.path.join(self.resolved_serving_dir, self.model_name)

    # ------------------------------------------------------------------ validation
    def validate(self) -> "PipelineConfig":
        """Raises ConfigError for values that would only fail deep inside a component."""
        if not 0 < self.eval_percent < 100:
            raise ConfigError(f"eval_percent must be between 1 and 99, got {self.eval_percent}: 0 leaves no eval "
                              "split to judge a model on, 100 no training split.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}.")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.stage2_epochs < 0:
            raise ConfigError(f"stage2_epochs must be 0 or more, got {self.stage2_epochs}.")
        if not 0 <= self.max_accuracy_drop <= 1:
            raise ConfigError(f"max_accuracy_drop must be in [0, 1], got {self.max_accuracy_drop}.")
        if not 0 <= self.accuracy_threshold <= 1:
            raise ConfigError(f"accuracy_threshold must be in [0, 1], got {self.accuracy_threshold}.")
        try:  # Parses fine_tune_blocks too: TrainingParams holds the one parser.
            TrainingParams.from_custom_config(self.training_params())
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.aspect not in ASPECT_POLICIES:
            raise ConfigError(f"aspect must be one of {ASPECT_POLICIES}, got {self.aspect!r}.")
        if self.span_window < 1:
            raise ConfigError(f"span_window must be at least 1, got {self.span_window}.")
        if self.span_window > 1 and not self.use_spans:
            raise ConfigError(f"span_window {self.span_window} needs use_spans (data laid out as span-<N> folders).")
        if not self.text_column.strip() or not self.label_column.strip() or \
                self.text_column.strip() == self.label_column.strip():
            raise ConfigError(f"text_column {self.text_column!r} and label_column {self.label_column!r} must name two "
                              "different columns of the table's header.")
        if self.modality and self.modality not in modalities.known_names():
            raise ConfigError(f"modality must be one of {', '.join(repr(m) for m in modalities.known_names())} (or "
                              f"empty: the module's contract decides), got {self.modality!r}.")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ConfigError(f"image_size must be two positive integers (height,width), got {self.image_size}.")
        if self.beam_workers < 1:
            raise ConfigError(f"beam_workers must be at least 1, got {self.beam_workers}.")
        if self.dataflow_max_workers < 1:
            raise ConfigError(f"dataflow_max_workers must be at least 1, got {self.dataflow_max_workers}.")
        if self.trainer_gpu_count < 0:
            raise ConfigError(f"trainer_gpu_count must be 0 or more, got {self.trainer_gpu_count}.")
        if glob.escape(self.output_dir) != self.output_dir:
            # TFX's StatisticsGen, Transform, Trainer and Evaluator read '<artifact uri>/Split-<name>/*' unescaped.
            magic = sorted({char for char in self.output_dir if glob.escape(char) != char})
            raise ConfigError(f"output_dir {self.output_dir!r} holds {magic}, which TFX's components read as glob "
                              "pattern characters in the paths of their inputs under it: they would find no file. "
                              "Use an output folder whose path has no '*', '?' or '['.")
        if self.trainer_cpu <= 0 or self.trainer_memory_gb <= 0:
            raise ConfigError(f"trainer_cpu and trainer_memory_gb must be positive, got {self.trainer_cpu} and "
                              f"{self.trainer_memory_gb}.")
        # Names Kubeflow Pipelines / Vertex AI constrain, for every command.
        platform_names.check_config(self)
        return self

    # ------------------------------------------------------------------ parameters handed to user code
    def training_params(self) -> Dict[str, Any]:
        """The Trainer's custom_config: the TrainingParams fields, as plain JSON types (serialised into the
        pipeline)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainingParams) if hasattr(self, f.name)}


def user_fields():
    """The fields a user may set (CLI flags and YAML keys)."""
    return [f for f in dataclasses.fields(PipelineConfig) if not f.metadata.get("internal")]


def coerce(field: dataclasses.Field, value: Any) -> Any:
    """Converts a YAML or command-line value to the field's type, with an error that names the field."""
    if value is None:
        return None
    kind = str(field.type)
    try:
        if "Tuple" in kind:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(int(v) for v in items)
        if kind.startswith("bool") or kind == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if "float" in kind:
            return float(value)
        if kind == "int":
            return int(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{field.name}: cannot read {value!r} as {kind}.") from None


def from_mapping(values: Mapping[str, Any], base: Optional[PipelineConfig] = None) -> PipelineConfig:
    """Applies `values` (e.g. a parsed YAML file) on top of `base`; unknown keys are an error, not ignored."""
    fields = {f.name: f for f in user_fields()}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"Unknown configuration keys {unknown}. Known keys: {sorted(fields)}.")
    updates = {name: coerce(fields[name], value) for name, value in values.items()}
    return dataclasses.replace(base or PipelineConfig(), **updates)


def load_yaml(path: str, base: Optional[PipelineConfig] = None) -> PipelineConfig:
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror}.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"Config file {path} is not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of keys to values, not {type(values).__name__}.")
    return from_mapping(values, base)
