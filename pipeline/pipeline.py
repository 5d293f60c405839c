"""`create_pipeline(config, module)`: the one component graph, shared by the local and the Kubeflow/Vertex runners.

Pure composition: every value comes from the user's config and the ResolvedModule that
`hub_modules.module_resolution.resolve(config)` returned; nothing here reads data or talks to services.
"""
import ast
import hashlib
import importlib.util
import json
import os
from typing import Dict, List, Optional

from google.protobuf import json_format
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from hubtfx.components.common import feature_keys
from hubtfx.components.common.contract import DEFAULT_MODALITY, TEXT_MODALITY
from hubtfx.components.evaluator.component import ComparingEvaluator
from hubtfx.components.example_gen.component import ImageFolderExampleGen
from hubtfx.components.gate.component import AnomalyGate
from hubtfx.components.pusher.component import AtomicPusher
from hubtfx.components.trainer import exported_model
from hubtfx.components.trainer.params import CODE_KEY
from hubtfx.components.transform import preprocessing
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.hub_modules import builder
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule, require
from hubtfx import schemas

PREPROCESSING_FN = "hubtfx.components.transform.preprocessing.preprocessing_fn"
RUN_FN = "hubtfx.components.trainer.run.run_fn"
# The modules TFX imports to run each component's user code, the roots of what its fingerprint covers. The Trainer
# also applies the graph preprocessing_fn built, so an edit to Transform's code re-runs it too.
TRANSFORM_CODE = (PREPROCESSING_FN.rpartition(".")[0],)
TRAINER_CODE = (RUN_FN.rpartition(".")[0], *TRANSFORM_CODE)
CURATED_SCHEMA = os.path.join(schemas.SCHEMA_DIR, "schema.pbtxt")
# The curated schema of each modality's examples (the raw feature differs); image's is CURATED_SCHEMA.
CURATED_SCHEMAS = {DEFAULT_MODALITY: CURATED_SCHEMA,
                   TEXT_MODALITY: os.path.join(schemas.SCHEMA_DIR, "text_schema.pbtxt")}


def _module_file(module: str):
    """The source file of a hubtfx module, found without importing it (nor the package that holds it); None for a
    name that is no module (e.g. a function imported from one)."""
    parts = module.split(".")
    if parts[0] != "hubtfx" or len(parts) < 2:
        return None
    spec = importlib.util.find_spec(".".join(parts[:2]))  # Imports only the `hubtfx` namespace.
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts[2:])
    for candidate in (os.path.join(path, "__init__.py"), path + ".py"):
        if os.path.isfile(candidate):
            return candidate
    return None


def _imported_modules(module: str, path: str) -> List[str]:
    """Every module name an import statement of the file may load, function-level imports included."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), filename=path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from package import name`: name may be a submodule or just an attribute; _module_file tells.
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def user_code_files(*modules: str) -> Dict[str, str]:
    """{module name: source file} of `modules` and of every hubtfx module they import, directly or not, with the
    `__init__.py` of each package on the way (Python runs those first).

    Read from the import statements, so nothing is imported and imports inside functions count too.
    """
    found: Dict[str, str] = {}
    pending = list(modules)
    while pending:
        name = pending.pop()
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        for prefix in [".".join(name.split(".")[:i]) for i in range(2, name.count(".") + 2)]:
            if prefix in found:
                continue
            path = _module_file(prefix)
            if path is None:
                continue
            found[prefix] = path
            pending += [n for n in _imported_modules(prefix, path) if n.split(".")[0] == "hubtfx"]
    return found


def source_fingerprint(*modules: str) -> str:
    """Hash of the source of `modules` and of every hubtfx module they import (see `user_code_files`).

    User code is referenced by dotted path (so Kubeflow images run the installed package), which TFX does not
    fingerprint; passing this in custom_config makes an edit to the code re-run the component instead of
    silently reusing a cached result.
    """
    return fingerprint_files(user_code_files(*modules))


def fingerprint_files(files: Dict[str, str]) -> str:
    """Hash of {module name: file} by name and content: where the package is installed does not count."""
    digest = hashlib.sha256()
    for name in sorted(files):
        with open(files[name], "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()[:16]


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Accuracy must reach the threshold and must not drop below the latest blessed model's (when the two can be
    compared: see components.evaluator.comparability). TFMA scores tf.Examples through `serving_examples`.

    Per-class precision and recall come from the confusion matrix (see `hubtfx.pipeline.reporting.eval_results`): TFMA's
    per-class metrics need the class ids when the pipeline is built, but the classes are only known once
    ExampleGen has read the data.
    """
    # On the overall slice only: a plain `threshold` would also gate every per-class slice, so one weak class
    # would block a model whose overall accuracy passes.
    accuracy = tfma.MetricConfig(
        class_name="SparseCategoricalAccuracy",
        per_slice_thresholds=[tfma.PerSliceMetricThreshold(
            slicing_specs=[tfma.SlicingSpec()],
            threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.accuracy_threshold}),
                change_threshold=tfma.GenericChangeThreshold(
                    direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                    absolute={"value": -config.max_accuracy_drop - 1e-9}),
            ))],
    )
    return tfma.EvalConfig(
        # The model type is named: left empty, TFMA finds it by loading the whole Keras model once more just to
        # see that it loads (tensorflow_model_analysis/utils/model_util.py, get_model_type), ~6 s per Evaluator run.
        model_specs=[tfma.ModelSpec(label_key=feature_keys.LABEL_KEY, prediction_key=exported_model.PROBABILITIES,
                                    signature_name=exported_model.EXAMPLES_SIGNATURE,
                                    model_type=tfma.constants.TF_KERAS)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[feature_keys.LABEL_NAME_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            accuracy,
            tfma.MetricConfig(class_name="SparseCategoricalCrossentropy"),
            tfma.MetricConfig(class_name="ExampleCount"),
            # Threshold 0: every example counts for its top-scoring class, as `class_id` in serving does.
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot", config='"thresholds": [0.0]'),
        ])],
    )


def default_handle_name(module: ResolvedModule) -> str:
    """How the lineage names the bundled module of the run's modality (no --hub-handle)."""
    return builder.bundled(module.modality).handle


def transform_custom_config(config: PipelineConfig, module: ResolvedModule) -> Dict:
    """Transform's custom_config: the modality, what its preprocessing needs from the module's contract (images:
    size, value range, resize method and the user's aspect policy; texts: the preprocessing model and sequence
    length; the preprocessing model's sha256 too, so that a changed one re-runs Transform) and the code fingerprint."""
    if module.modality == TEXT_MODALITY:
        inputs = {"preprocessor": module.preprocessor, "preprocessor_sha256": module.preprocessor_sha256,
                  "seq_length": module.seq_length}
    else:
        inputs = {"image_size": list(module.image_size), "value_range": list(module.value_range),
                  "resize_method": module.resize_method, "aspect": config.aspect}
    return {**inputs, preprocessing.MODALITY_KEY: module.modality, CODE_KEY: source_fingerprint(*TRANSFORM_CODE)}


def trainer_custom_config(config: PipelineConfig, module: ResolvedModule) -> Dict:
    """The Trainer's custom_config: the config's training parameters, the code fingerprint and the module's
    identity (handle and sha256)."""
    # The module's identity goes into the exported model's facts, which the Evaluator compares with its baseline's.
    return {**config.training_params(), CODE_KEY: source_fingerprint(*TRAINER_CODE),
            exported_model.MODULE_CONFIG_KEY: {"handle": config.hub_handle or default_handle_name(module),
                                               "sha256": module.sha256}}


def runtime_parameter_values(config: PipelineConfig, module: ResolvedModule) -> Dict[str, str]:
    """What a cluster run may change without recompiling, as the text each component receives.

    The Trainer's custom_config and the Evaluator's eval_config are one JSON parameter each: TFX substitutes a
    RuntimeParameter only as a whole property value, never inside a dict or proto, and both components decode
    JSON text (so run_fn still gets a dict). range_config selects a span; empty means the latest span.
    """
    values = {
        "data_root": config.resolved_data_root,
        "training_config": json.dumps(trainer_custom_config(config, module), sort_keys=True),
        "eval_config": json_format.MessageToJson(eval_config(config), sort_keys=True, indent=None,
                                                 preserving_proto_field_name=True),
    }
    if config.use_spans:
        values["range_config"] = ""
    return values


def runtime_parameters(config: PipelineConfig,
                       module: ResolvedModule) -> Dict[str, tfx.dsl.experimental.RuntimeParameter]:
    return {name: tfx.dsl.experimental.RuntimeParameter(name=name, ptype=str, default=value)
            for name, value in runtime_parameter_values(config, module).items()}


def span_window_resolver(config: PipelineConfig, examples: tfx.dsl.Channel) -> tfx.dsl.Resolver:
    """The Examples of the last `span_window` ingested spans (ExampleGen ingests one span per run)."""
    window = tfx.proto.RangeConfig(rolling_range=tfx.proto.RollingRange(num_spans=config.span_window))
    return tfx.dsl.Resolver(strategy_class=tfx.dsl.experimental.SpanRangeStrategy,
                            config={"range_config": window}, examples=examples).with_id("span_window_resolver")


def _require_config(config: PipelineConfig, where: str) -> PipelineConfig:
    if not isinstance(config, PipelineConfig):
        raise TypeError(f"{where} needs a PipelineConfig as its first argument, got a {type(config).__name__}.")
    return config


def create_components(config: PipelineConfig, module: ResolvedModule, with_runtime_parameters: bool = False,
                      schema_path: str = CURATED_SCHEMA) -> List:
    """The component list, in dependency order.

    config: the user's validated PipelineConfig.
    module: the backbone, as `hub_modules.module_resolution.resolve(config)` (or the Kubeflow runner) resolved it;
      anything else is a TypeError at once.
    with_runtime_parameters: the values of `runtime_parameter_values` become runtime parameters (for the
      Kubeflow/Vertex runner) instead of constants; their defaults are the config's values.
    schema_path: the TFDV schema ImportSchemaGen reads; the curated schema shipped with hubtfx by default (the
      Kubeflow runner passes its path inside the container image).
    """
    _require_config(config, "create_components")
    module = require(module, "create_components")
    parameters = runtime_parameters(config, module) if with_runtime_parameters else {}

    example_gen = ImageFolderExampleGen(
        input_base=parameters.get("data_root", config.resolved_data_root), use_spans=config.use_spans,
        eval_percent=config.eval_percent, label_map_path=config.label_map_path,
        range_config=parameters.get("range_config"), modality=module.modality, text_column=config.text_column,
        label_column=config.label_column)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    if schema_path in (None, "", CURATED_SCHEMA):
        schema_path = CURATED_SCHEMAS.get(module.modality, CURATED_SCHEMA)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    span_window = span_window_resolver(config, example_gen.outputs["examples"]) if config.span_window > 1 else None
    training_examples = span_window.outputs["examples"] if span_window else example_gen.outputs["examples"]
    # Also checks that every class has training examples in what the Trainer reads.
    anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"],
                               examples=example_gen.outputs["examples"], training_examples=training_examples)

    # The Hub module is a tracked input: its lineage (handle and content hash) is recorded in ML Metadata.
    hub_module = tfx.dsl.Importer(
        source_uri=module.path, artifact_type=tfx.types.standard_artifacts.Model,
        custom_properties={"hub_handle": config.hub_handle or default_handle_name(module), "sha256": module.sha256,
                           **({"preprocessor": module.preprocessor, "preprocessor_sha256": module.preprocessor_sha256}
                              if module.preprocessor else {})},
    ).with_id("hub_module")

    transform = tfx.components.Transform(
        examples=training_examples,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        materialize=False,
        disable_statistics=True,
        custom_config=transform_custom_config(config, module),
    )
    # Nothing trains on data with anomalies: the Trainer needs Transform's output, Transform waits for the gate.
    transform.add_upstream_node(anomaly_gate)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=training_examples,
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        base_model=hub_module.outputs["result"],
        train_args=tfx.proto.TrainArgs(),
        eval_args=tfx.proto.EvalArgs(),
        custom_config=parameters.get("training_config", trainer_custom_config(config, module)),
    )
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    # Drops a baseline it cannot compare with (other classes, module or input size), with the reason recorded.
    evaluator = ComparingEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"],
        eval_config=parameters.get("eval_config", eval_config(config)),
    ).with_id("Evaluator")
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.push_base_dir)),
    )
    return [example_gen, statistics_gen, schema_gen, example_validator, *([span_window] if span_window else []),
            anomaly_gate, hub_module, transform, trainer, baseline_resolver,
            evaluator, pusher]


def create_pipeline(config: PipelineConfig, module: ResolvedModule, metadata_connection_config=None,
                    beam_pipeline_args=None, with_runtime_parameters: bool = False,
                    components: Optional[List] = None, schema_path: str = CURATED_SCHEMA) -> tfx.dsl.Pipeline:
    """The pipeline of `create_components(config, module, with_runtime_parameters, schema_path)`, or of
    `components` when a runner adapted that list for its target (kubeflow.runner).

    config: the user's validated PipelineConfig; module: the ResolvedModule of
    `hub_modules.module_resolution.resolve(config)` (required even with `components`, so every caller has resolved
    it; anything else is a TypeError at once).
    """
    _require_config(config, "create_pipeline")
    module = require(module, "create_pipeline")
    if components is None:
        components = create_components(config, module, with_runtime_parameters, schema_path)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
