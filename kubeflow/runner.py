"""Compiles `create_pipeline(config, module)` for Vertex AI Pipelines or Kubeflow Pipelines 2.x (KubeflowV2DagRunner).

The compiled spec is self-contained: every step runs `config.image` (built from kubeflow/Dockerfile), the
Transform and Trainer code is the hubtfx package installed in that image (referenced by dotted path, so nothing
is uploaded at compile time), and the Hub module is the one baked into the image (or a gs:// module).
"""
import dataclasses
import json
import os
import posixpath
import re
import sys
import tempfile
from typing import Dict, List, Tuple

import yaml
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx

from hubtfx.kubeflow import kfp_target
from hubtfx.pipeline import platform_names
from hubtfx.pipeline.config import ConfigError, PipelineConfig
from hubtfx.pipeline.hub_modules import builder
from hubtfx.pipeline.hub_modules import module_resolution
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule, require
from hubtfx.components.common.contract import TEXT_MODALITY
from hubtfx.pipeline.pipeline import CURATED_SCHEMA, CURATED_SCHEMAS, create_components, create_pipeline, runtime_parameter_values

TARGETS = ("vertex", "kubeflow")

# Fixed paths inside the image; kubeflow/Dockerfile creates them (tests/kubeflow/test_dockerfile.py checks both).
IMAGE_ROOT = "/hubtfx"
IMAGE_SOURCE_DIR = posixpath.join(IMAGE_ROOT, "src")
IMAGE_MODULE_DIR = posixpath.join(IMAGE_ROOT, "modules", os.path.basename(builder.module_dir_for("feature_vector")))
# The text pair, baked beside it (the encoder's contract names its preprocessor as a sibling folder).
IMAGE_TEXT_MODULE_DIR = posixpath.join(IMAGE_ROOT, "modules",
                                       os.path.basename(builder.module_dir_for(builder.TEXT_ENCODER)))
IMAGE_SCHEMA_PATH = posixpath.join(IMAGE_SOURCE_DIR, "schemas", "schema.pbtxt")

# What a dry-run spec (allow_local_paths) names when no image or project is given; nothing pulls or bills them.
LOCAL_IMAGE = "hubtfx:dry-run"
# The pipeline-root schemes KFP 2.x's launcher can stage artifacts through.
KFP_OBJECT_STORES = ("gs://", "s3://", "minio://")
LOCAL_PROJECT = "dry-run"

DEFAULT_GPU_TYPE = {"vertex": "NVIDIA_TESLA_T4", "kubeflow": "nvidia.com/gpu"}
# A Kubernetes extended-resource name (vendor-domain/name): KFP puts it verbatim into the pod's resource limits.
_KUBERNETES_RESOURCE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-._A-Za-z0-9]*[A-Za-z0-9])?$")
ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


def vertex_gpu_types() -> List[str]:
    """The GPU names Vertex AI accepts, from the pinned google-cloud-aiplatform (so the list follows the SDK)."""
    from google.cloud.aiplatform_v1.types import AcceleratorType  # pylint: disable=import-outside-toplevel
    return sorted(name for name in AcceleratorType.__members__ if name.startswith("NVIDIA_"))


def gpu_type(config: PipelineConfig, target: str) -> str:
    """The Trainer's accelerator name for `target`; a name the target would not schedule is an error here."""
    name = config.trainer_gpu_type or DEFAULT_GPU_TYPE[target]
    if target == "vertex" and name not in vertex_gpu_types():
        hint = (" That is a Kubernetes resource name (for --target kubeflow)." if "/" in name else "")
        raise ConfigError(f"Unknown Vertex AI GPU type {name!r}.{hint} Use one of: {', '.join(vertex_gpu_types())}.")
    if target == "kubeflow" and not _KUBERNETES_RESOURCE.match(name):
        hint = (" That is a Vertex AI accelerator name; on Kubeflow select the GPU model with a node selector."
                if name in vertex_gpu_types() else "")
        raise ConfigError(f"Unknown Kubeflow GPU resource {name!r}.{hint} Use the resource name the cluster's "
                          "device plugin advertises, e.g. nvidia.com/gpu or amd.com/gpu.")
    return name


def trainer_resources(config: PipelineConfig, target: str) -> ResourceSpec:
    resources = ResourceSpec(cpu_limit=config.trainer_cpu, memory_limit=config.trainer_memory_gb)
    if config.trainer_gpu_count:
        resources.accelerator.CopyFrom(ResourceSpec.AcceleratorConfig(
            type=gpu_type(config, target), count=config.trainer_gpu_count))
    return resources


def dataflow_temp_location(config: PipelineConfig) -> str:
    return config.dataflow_temp_location or posixpath.join(config.output_dir, "tmp", "dataflow")


def beam_pipeline_args(config: PipelineConfig, target: str) -> List[str]:
    """Dataflow on Vertex; on Kubeflow, Beam runs inside the step's pod on all of its cores.

    In the pod, the FnApiRunner is named for the reason local runs name it (pipeline/local_runner.py): Beam's default
    DirectRunner would first try to download its Prism runner from github.com in every Beam step, which a cluster
    without egress turns into a failed lookup or a hang. The image is named so that TFX does not package itself
    for remote workers in every step (the workers are the pod's own processes, running this image).
    """
    if target == "kubeflow":
        return ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=0",
                f"--sdk_container_image={config.image}"]
    return [
        "--runner=DataflowRunner",
        f"--project={config.gcp_project}",
        f"--region={config.gcp_region}",
        f"--temp_location={dataflow_temp_location(config)}",
        f"--machine_type={config.dataflow_machine_type}",
        f"--max_num_workers={config.dataflow_max_workers}",
        # Workers run the pipeline image: it has hubtfx's executors and sets TF_USE_LEGACY_KERAS.
        f"--sdk_container_image={config.image}",
        "--sdk_location=container",
        "--experiments=use_runner_v2",
    ]


def check_cluster_settings(config: PipelineConfig, target: str, allow_local_paths: bool = False) -> None:
    """Fails on settings that would only break once the job runs in the cluster.

    allow_local_paths: for a spec that `hubtfx execute-spec` runs on this machine only (a dry run): local folders
    are accepted and no image or project is required.
    """
    if target not in TARGETS:
        raise ConfigError(f"Unknown target {target!r}; use one of {TARGETS}.")
    platform_names.check_target(config, target)
    if config.data_root and os.path.splitext(config.data_root.rstrip("/"))[1].lower() in (".csv", ".tsv"):
        # TFX's own ExampleGen driver, which the cluster runs, fingerprints <data root>/*/*: a table is invisible to
        # it, so the run would fail (or, with spans, find no span) and a changed table would never re-run.
        raise ConfigError(f"data_root {config.data_root!r} is a table of texts: on {target} the data must be class "
                          "folders of .txt files (TFX's own ExampleGen driver cannot see a table there). Split it into "
                          "<class>/<n>.txt files, or train locally with `hubtfx run`.")
    if allow_local_paths:
        if not config.data_root:
            raise ConfigError("Set --data-root to the image folder the dry run reads.")
        return
    if not config.image:
        raise ConfigError("Set --image to the pipeline image built from kubeflow/Dockerfile, e.g. "
                          "us-docker.pkg.dev/PROJECT/REPO/hubtfx:1 (see the README, 'Run on Vertex / Kubeflow').")
    if not config.data_root:
        raise ConfigError("Set --data-root to the image folder the cluster reads, e.g. gs://BUCKET/flowers "
                          "(the sample data is not generated on a cluster).")
    if target == "vertex" and not config.gcp_project:
        raise ConfigError("Set --gcp-project: Vertex AI and Dataflow run in a Google Cloud project.")
    if config.span_window > 1:
        raise ConfigError("span_window > 1 cannot run on Vertex/Kubeflow: KubeflowV2DagRunner compiles only the "
                          "latest-artifact and latest-blessed-model resolvers. Use span_window 1 (the latest span).")
    if target == "kubeflow" and not config.output_dir.startswith(KFP_OBJECT_STORES):
        # launcher_v2.go LocalPathForURI: every output artifact (under the pipeline root) must be in one of these.
        raise ConfigError(f"output_dir must be a {', '.join(KFP_OBJECT_STORES)} folder for --target kubeflow: the "
                          f"KFP launcher stages every artifact through object storage; got {config.output_dir!r}.")
    paths = {"output_dir": config.output_dir, "data_root": config.data_root, "serving_dir": config.serving_dir,
             "dataflow_temp_location": config.dataflow_temp_location if target == "vertex" else ""}
    for name, value in paths.items():
        if value:
            _check_cluster_path(name, value, target)


# On Vertex / Kubeflow, TFX's own driver container (not hubtfx's ImageFolderDriver) resolves the span and
# fingerprints the data by globbing the data root and matching the result with a regex built from it
# (tfx.components.example_gen.utils._glob_to_regex, which escapes only '.', '+', '(', ')'), so these characters
# in the data root would silently match no file or the wrong ones.
_DRIVER_PATTERN_CHARACTERS = "*?[]{}^$|\\"


def _check_cluster_path(name: str, value: str, target: str) -> None:
    special = sorted({char for char in value if char in _DRIVER_PATTERN_CHARACTERS})
    if name == "data_root" and special:
        raise ConfigError(f"data_root {value!r} holds {special}: on {target}, TFX's ExampleGen driver reads the data "
                          "root as a glob and regex pattern, so it would find no file or the wrong ones. Copy the "
                          "data to a folder whose path has none of " + " ".join(_DRIVER_PATTERN_CHARACTERS) + ".")
    if target == "vertex" and not value.startswith("gs://"):
        raise ConfigError(f"{name} must be a gs:// folder for --target vertex (the steps cannot see this "
                          f"machine's files), got {value!r}.")
    if "://" not in value and not value.startswith("/"):
        raise ConfigError(f"{name} must be a URI (gs://, s3://, ...) or an absolute path on a volume every "
                          f"step mounts, got {value!r}.")


def resolve_module_for_cluster(config: PipelineConfig, allow_local_paths: bool = False) -> ResolvedModule:
    """The ResolvedModule the cluster's steps use: its identity and contract come from this machine; its path is
    where the steps read it, in the image or on gs://.

    The bundled module is built deterministically, so the copy built here has the same sha256 as the one
    `hubtfx build-module` bakes into the image. With allow_local_paths the steps read this machine's copy.
    """
    if allow_local_paths:
        return module_resolution.resolve(config)
    handle = config.hub_handle
    if not handle:
        local = builder.build_module(builder.bundled(config.modality).kind)
        in_image = IMAGE_TEXT_MODULE_DIR if config.modality == TEXT_MODALITY else IMAGE_MODULE_DIR
        return module_resolution.from_contract(in_image, builder.module_sha256(local), config, read_from=local)
    if handle.startswith("gs://"):
        return dataclasses.replace(module_resolution.resolve(config), path=handle)
    raise ConfigError(f"--hub-handle {handle!r} is not readable by the cluster's steps. Copy the module folder to "
                      "gs://BUCKET/... and pass that, or omit --hub-handle to use the module baked into the image.")


def cluster_config(config: PipelineConfig, target: str, allow_local_paths: bool = False) -> PipelineConfig:
    """`config` checked for `target` (a ConfigError for settings that would only fail in the cluster); a dry run
    (allow_local_paths) gets a placeholder image and project where none is set."""
    check_cluster_settings(config, target, allow_local_paths)
    gpu_type(config, target)
    if allow_local_paths:
        return dataclasses.replace(config, image=config.image or LOCAL_IMAGE,
                                   gcp_project=config.gcp_project or LOCAL_PROJECT)
    return config


def schema_path_for(allow_local_paths: bool = False, modality: str = "image") -> str:
    """The curated schema of the modality's examples as the steps read it: inside the image, or (dry run) on this
    machine."""
    local = CURATED_SCHEMAS.get(modality, CURATED_SCHEMA)
    return local if allow_local_paths else posixpath.join(posixpath.dirname(IMAGE_SCHEMA_PATH), os.path.basename(local))


def prepare(config: PipelineConfig, target: str,
            allow_local_paths: bool = False) -> Tuple[PipelineConfig, ResolvedModule]:
    """The checked cluster config (`cluster_config`) and the ResolvedModule its steps use
    (`resolve_module_for_cluster`): the first two arguments of `compile_to_file`."""
    config = cluster_config(config, target, allow_local_paths)
    return config, resolve_module_for_cluster(config, allow_local_paths)


def build_pipeline(config: PipelineConfig, module: ResolvedModule, target: str,
                   schema_path: str = IMAGE_SCHEMA_PATH) -> tfx.dsl.Pipeline:
    """The shared component graph for `config` and the ResolvedModule `module` (see `resolve_module_for_cluster`),
    with runtime parameters, the target's Beam arguments and the GPU Trainer."""
    components = create_components(config, module, with_runtime_parameters=True, schema_path=schema_path)
    for component in components:
        if isinstance(component, tfx.components.Trainer):
            component.with_platform_config(trainer_resources(config, target))
    kfp_target.drop_repeated_inputs(components)  # e.g. AnomalyGate's training_examples, when they are its examples
    if target == "kubeflow":  # KFP 2.x cannot execute resolvers
        components = kfp_target.replace_baseline_resolver(components, config.push_base_dir)
    return create_pipeline(config, module, beam_pipeline_args=beam_pipeline_args(config, target),
                           components=components)


def compile_spec(config: PipelineConfig, module: ResolvedModule, target: str,
                 schema_path: str = IMAGE_SCHEMA_PATH) -> Dict:
    """The PipelineSpec (as a dict) for a config that went through `cluster_config` and its ResolvedModule."""
    module = require(module, "compile_spec")
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=config.image, use_pipeline_spec_2_1=True))  # KFP 2.x servers need schema 2.1
    job = runner.run(build_pipeline(config, module, target, schema_path), write_out=False)
    spec = job["pipelineSpec"]
    add_parameter_defaults(spec, runtime_parameter_values(config, module))
    # Both Vertex and KFP read the pipeline root from here, so the spec alone is a complete package.
    spec["defaultPipelineRoot"] = config.pipeline_root
    return kfp_target.adapt_spec(spec) if target == "kubeflow" else spec


def add_parameter_defaults(spec: Dict, values: Dict[str, str]) -> None:
    """TFX's compiler drops RuntimeParameter defaults; without them every run would have to pass every value."""
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    if set(parameters) != set(values):
        raise RuntimeError(f"The compiled runtime parameters {sorted(parameters)} differ from "
                           f"pipeline.runtime_parameter_values {sorted(values)}; keep the two in step.")
    for name, value in values.items():
        parameters[name].update(defaultValue=value, isOptional=True)


def parameter_defaults(spec: Dict) -> Dict[str, str]:
    return {name: p["defaultValue"] for name, p in spec["root"]["inputDefinitions"]["parameters"].items()}


def write_spec(spec: Dict, path: str) -> None:
    """JSON, or YAML for a .yaml/.yml path; both load with kfp and aiplatform.PipelineJob."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        if path.endswith((".yaml", ".yml")):
            yaml.safe_dump(spec, f, sort_keys=True)
        else:
            json.dump(spec, f, indent=2, sort_keys=True)


# ------------------------------------------------------------------------------------------------- leak scan
_SECRET_PATTERNS = {
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\"private_key(_id)?\""),
    "an OAuth access token": re.compile(r"\bya29\.[\w-]{20,}"),
    "an AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "a client secret": re.compile(r"client_secret", re.IGNORECASE),
    "a credentials file setting": re.compile(r"GOOGLE_APPLICATION_CREDENTIALS"),
}


def local_path_markers() -> List[str]:
    """Folders of this machine that must never reach a cluster spec."""
    candidates = [os.getcwd(), os.path.expanduser("~"), sys.prefix, tempfile.gettempdir(),
                  builder.default_cache_dir(), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    return sorted({os.path.normpath(p) for p in candidates if len(os.path.normpath(p)) > 1}, key=len, reverse=True)


def find_leaks(spec_text: str) -> List[str]:
    """Local paths, home folders and credentials in a compiled spec; empty if it is clean."""
    leaks = []
    for marker in local_path_markers():
        # Only a path that starts a value counts: gs://bucket/tmp/... is not this machine's /tmp.
        if re.search(r"(?<![\w./:-])" + re.escape(marker) + r"(?=[/\"'\s,]|$)", spec_text):
            leaks.append(f"the local path {marker}")
    leaks += [what for what, pattern in _SECRET_PATTERNS.items() if pattern.search(spec_text)]
    return leaks


def compile_to_file(config: PipelineConfig, module: ResolvedModule, target: str, output: str,
                    allow_local_paths: bool = False) -> Dict:
    """Compiles and writes the spec of `config` and `module`, as `prepare(config, target, allow_local_paths)`
    returns them; refuses to write a spec that leaks this machine's details.

    allow_local_paths: a dry-run spec for `hubtfx execute-spec`, which names this machine's folders on purpose
    (and reads the module and the curated schema from this machine).
    """
    module = require(module, "compile_to_file")
    spec = compile_spec(config, module, target, schema_path_for(allow_local_paths, module.modality))
    leaks = [] if allow_local_paths else find_leaks(json.dumps(spec))
    if leaks:
        raise ConfigError(f"The compiled spec would contain {', '.join(leaks)}. Point every path in the config "
                          "(output_dir, data_root, serving_dir, hub_handle) at cluster storage such as gs://.")
    write_spec(spec, output)
    return spec
