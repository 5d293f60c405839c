"""Names and values that Kubeflow Pipelines and Vertex AI constrain, checked when the config is validated.

A compiled spec must be accepted by the tools it is made for. TFX's compiler checks the pipeline name too weakly
(and with a broken message), and most other values are only checked by the server, at upload or when a step
starts. So every value hubtfx hands to those tools is checked here, with the allowed form in the message:

* `check_config`, from `PipelineConfig.validate`: values every command uses, so `hubtfx run`, `compile` and
  `schedule` refuse the same config before anything runs (a config that trains locally also compiles).
* `check_target`, from `hubtfx.kubeflow.runner.check_cluster_settings`: values only one target reads.
* `check_schedule`: the schedule command's own names.

Each rule cites its source. Errors are `ConfigError`s (exit code 2).
"""
from __future__ import annotations

import re
from typing import Optional

from hubtfx.pipeline.errors import ConfigError

# Pipeline name. The strictest of the tools that read it, so one config works for every target:
# * TFX 1.16 KubeflowV2DagRunner (tfx/orchestration/kubeflow/v2/pipeline_builder.py `_check_name`) and
#   kfp 2.5 (kfp/dsl/utils.py `validate_pipeline_name`): ^[a-z0-9][a-z0-9-]{0,127}$.
# * KFP servers after kubeflow/pipelines#11952 (2025): a Kubernetes DNS-1123 name, "lower case alphanumeric
#   characters, '-' or '.', and must start and end with an alphanumeric character" (so no trailing '-').
# * google-cloud-aiplatform 1.165 PipelineJob (pipeline_jobs.py, constants/pipeline.py `_VALID_NAME_PATTERN`):
#   the job ID "<pipeline name>-<YYYYmmddHHMMSS>" must match ^[a-z][-a-z0-9]{0,127}$, so the name must start
#   with a letter and have at most 128 - 15 = 113 characters.
PIPELINE_NAME_MAX = 113
_PIPELINE_NAME = re.compile(rf"^[a-z](?:[-a-z0-9]{{0,{PIPELINE_NAME_MAX - 2}}}[a-z0-9])?$")
PIPELINE_NAME_FORM = (f"lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, "
                      f"at most {PIPELINE_NAME_MAX} characters")

# Serving model name: a folder, <serving_dir>/<model_name>/<version>, and TF Serving's URL path segment
# /v1/models/<model_name> (tensorflow_serving/g3doc/api_rest.md), so one plain path segment.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Container image reference, the grammar of github.com/distribution/reference (regexp.go, reference.go), which
# Docker, containerd and Kubernetes (kubelet's InvalidImageName) apply: [host[:port]/]path[:tag][@digest], path
# components lowercase, the whole name at most 255 characters. (IPv6-literal registry hosts are not accepted.)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")
_IMAGE_NAME_MAX = 255

# Google Cloud project ID (cloud.google.com/resource-manager/docs/creating-managing-projects): 6 to 30 lowercase
# letters, digits or hyphens, starting with a letter, not ending with a hyphen; legacy domain-scoped IDs are
# "example.com:my-project". A project number is accepted as well (Vertex AI resource names take either).
_PROJECT_ID = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
_PROJECT = re.compile(rf"^(?:{_PROJECT_ID}|[a-z0-9][a-z0-9.-]*[a-z0-9]:{_PROJECT_ID}|[0-9]{{6,20}})$")

# Compute Engine machine type, as Dataflow's --machine_type takes it (cloud.google.com/compute/docs/machine-
# resource): <series>-<kind>-<size> such as n1-standard-4, e2-highmem-8, custom-4-16384, c3-standard-4-lssd.
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)+$")

# Vertex AI Schedule and PipelineJob display names: "up to 128 characters long and can consist of any UTF-8
# characters" (google/cloud/aiplatform_v1/types/schedule.py, pipeline_job.py).
DISPLAY_NAME_MAX = 128

# Service accounts. Vertex AI runs the pipeline as a Google service account given by its e-mail address
# (aiplatform_v1 PipelineJob.service_account); a KFP recurring run uses a Kubernetes service account of the
# namespace, whose name is a DNS-1123 subdomain (kubernetes.io/docs/concepts/overview/working-with-objects/names).
_SERVICE_ACCOUNT_EMAIL = re.compile(r"^[a-z0-9][a-z0-9._-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_SUBDOMAIN_MAX = 253


def suggest_pipeline_name(value: str) -> str:
    """A name in PIPELINE_NAME_FORM close to `value`: camelCase and separators become '-', e.g.
    'flowers_retrain' -> 'flowers-retrain', 'FlowersRetrain' -> 'flowers-retrain'."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", value.strip()).lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    if not text or not text[0].isalpha():
        text = ("hubtfx-" + text).rstrip("-")
    return text[:PIPELINE_NAME_MAX].rstrip("-")


def check_pipeline_name(value: str) -> None:
    if not _PIPELINE_NAME.match(value):
        raise ConfigError(
            f"pipeline_name {value!r} would be refused by Kubeflow Pipelines or Vertex AI. Use {PIPELINE_NAME_FORM}, "
            f"e.g. {suggest_pipeline_name(value)!r}. (TFX's compiler and KFP allow "
            "[a-z0-9][a-z0-9-]{0,127}; KFP servers since 2025 also require a letter or digit at the end; Vertex AI "
            "job IDs, <pipeline_name>-<timestamp>, must start with a letter and have at most 128 characters.)")


def check_config(config) -> None:
    """Raises ConfigError for a value of `config` (a PipelineConfig) that KFP, Vertex AI, Kubernetes or TF
    Serving would refuse; target-independent, so every command applies it."""
    check_pipeline_name(config.pipeline_name)
    if not _MODEL_NAME.match(config.model_name):
        raise ConfigError(
            f"model_name {config.model_name!r} must be one folder name that TF Serving can serve at "
            "/v1/models/<model_name>: letters, digits, '.', '_' and '-', starting with a letter or digit, at most "
            f"128 characters (e.g. {re.sub(r'[^A-Za-z0-9._-]+', '-', config.model_name).strip('-._') or 'hubtfx'}).")
    if config.image:
        check_image(config.image)
    if config.gcp_project and not _PROJECT.match(config.gcp_project):
        raise ConfigError(
            f"gcp_project {config.gcp_project!r} is not a Google Cloud project ID: 6 to 30 lowercase letters, "
            "digits or '-', starting with a letter and not ending with '-' (e.g. my-project-123). Use the project "
            "ID shown by `gcloud projects list`, not the project's display name.")
    if not _MACHINE_TYPE.match(config.dataflow_machine_type):
        raise ConfigError(
            f"dataflow_machine_type {config.dataflow_machine_type!r} is not a Compute Engine machine type: "
            "lowercase <series>-<kind>-<size>, e.g. n1-standard-4, e2-highmem-8 or custom-4-16384.")


def check_image(image: str) -> None:
    match = _IMAGE.match(image)
    if match and len(match.group("name")) <= _IMAGE_NAME_MAX:
        return
    hint = ""
    if "://" in image:
        hint = " Leave out the scheme (https://)."
    elif image != image.strip() or " " in image:
        hint = " It contains spaces."
    elif re.search(r"[A-Z]", image.split("/", 1)[-1].split(":")[0]):
        hint = " Repository paths must be lowercase."
    raise ConfigError(
        f"image {image!r} is not a container image reference Kubernetes and Vertex AI can pull.{hint} Use "
        "[registry/]path[:tag][@sha256:digest] with a lowercase path, e.g. "
        "us-central1-docker.pkg.dev/my-project/hubtfx/hubtfx:1.")


def check_target(config, target: str) -> None:
    """Values only `target` ('vertex' or 'kubeflow') reads; called before compiling."""
    if target != "vertex":
        return
    from google.cloud.aiplatform import utils as aiplatform_utils  # pylint: disable=import-outside-toplevel
    try:
        # The SDK's own check (its SUPPORTED_REGIONS), which aiplatform.init and PipelineJob apply at submit time.
        aiplatform_utils.validate_region(config.gcp_region)
    except ValueError:
        raise ConfigError(
            f"gcp_region {config.gcp_region!r} is not a Vertex AI region. Use one such as us-central1, "
            "europe-west4 or asia-southeast1 (cloud.google.com/vertex-ai/docs/general/locations).") from None


def check_schedule(target: str, display_name: str, service_account: Optional[str], experiment: str) -> None:
    """The schedule command's names, checked before the pipeline is compiled or anything is sent."""
    if not display_name.strip() or len(display_name) > DISPLAY_NAME_MAX:
        raise ConfigError(f"--display-name must be 1 to {DISPLAY_NAME_MAX} characters and not blank (Vertex AI "
                          f"schedule display names), got {len(display_name)} characters: {display_name[:40]!r}.")
    if target == "kubeflow" and not experiment.strip():
        raise ConfigError("--experiment must not be blank: KFP refuses an empty experiment name.")
    if not service_account:
        return
    if target == "vertex" and not _SERVICE_ACCOUNT_EMAIL.match(service_account):
        raise ConfigError(
            f"--service-account {service_account!r}: Vertex AI runs pipelines as a Google service account, given "
            "by its e-mail address, e.g. pipelines@my-project.iam.gserviceaccount.com.")
    if target == "kubeflow" and (not _DNS1123_SUBDOMAIN.match(service_account)
                                 or len(service_account) > _DNS1123_SUBDOMAIN_MAX):
        hint = (" That is a Google service account; KFP runs steps as a Kubernetes service account of its "
                "namespace (for Workload Identity, bind the two)." if "@" in service_account else "")
        raise ConfigError(
            f"--service-account {service_account!r} is not a Kubernetes service account name.{hint} Use lowercase "
            "letters, digits, '-' and '.', starting and ending with a letter or digit, e.g. pipeline-runner.")
