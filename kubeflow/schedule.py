"""Scheduled retraining: a Vertex AI PipelineJob schedule or a Kubeflow Pipelines recurring run.

Both are created with the official clients (google-cloud-aiplatform, kfp). A dry run points the same client
code at a loopback endpoint (kubeflow.loopback) and returns what it sent, so the printed request is the real one.
"""
import contextlib
import dataclasses
import os
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

from hubtfx.pipeline.config import ConfigError, PipelineConfig
from hubtfx.kubeflow import loopback

# Vertex uses standard 5-field cron; KFP's scheduler (robfig/cron) wants a leading seconds field.
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,\-]+$")
DRY_RUN_EXPERIMENT_ID = "dry-run-experiment-id"
KFP_HOST_ENV = "KF_PIPELINES_ENDPOINT"


@dataclasses.dataclass
class ScheduleSpec:
    """What to schedule, besides the pipeline config."""
    target: str
    cron: str
    display_name: str
    package_path: str  # the compiled pipeline spec (YAML)
    parameter_values: Dict[str, Any]
    service_account: str = ""
    kfp_host: str = ""
    experiment: str = "hubtfx"


def check_cron(cron: str) -> str:
    fields = cron.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(f"--cron must be a 5-field cron expression (minute hour day-of-month month day-of-week), "
                          f"e.g. \"0 3 * * 1\" for Mondays at 03:00 UTC; got {cron!r}.")
    return " ".join(fields)


def kfp_cron(cron: str) -> str:
    return "0 " + check_cron(cron)


def vertex_endpoint(config: PipelineConfig) -> str:
    return f"{config.gcp_region}-aiplatform.googleapis.com"


def create_vertex_schedule(config: PipelineConfig, spec: ScheduleSpec, api_endpoint: Optional[str] = None,
                           credentials=None) -> str:
    """Creates the PipelineJob schedule; returns its resource name."""
    from google.cloud import aiplatform  # pylint: disable=import-outside-toplevel
    # REST, so that a dry run through the loopback endpoint sends what a real run sends.
    aiplatform.init(project=config.gcp_project, location=config.gcp_region,
                    api_endpoint=api_endpoint or vertex_endpoint(config), api_transport="rest")
    job = aiplatform.PipelineJob(
        display_name=config.pipeline_name, template_path=spec.package_path, pipeline_root=config.pipeline_root,
        parameter_values=spec.parameter_values, project=config.gcp_project, location=config.gcp_region,
        credentials=credentials)
    schedule = job.create_schedule(cron=check_cron(spec.cron), display_name=spec.display_name,
                                   max_concurrent_run_count=1, service_account=spec.service_account or None)
    return schedule.resource_name


def create_kfp_recurring_run(config: PipelineConfig, spec: ScheduleSpec, host: str) -> str:
    """Creates (or reuses) the experiment and the recurring run on a KFP 2.x server; returns the run's id."""
    import kfp  # pylint: disable=import-outside-toplevel
    # kfp prints links to stdout; keep stdout for our own output.
    with contextlib.redirect_stdout(sys.stderr):
        client = kfp.Client(host=host)
        experiment = client.create_experiment(spec.experiment)
        run = client.create_recurring_run(
            experiment_id=experiment.experiment_id, job_name=spec.display_name, cron_expression=kfp_cron(spec.cron),
            max_concurrency=1, no_catchup=True, params=spec.parameter_values,
            pipeline_package_path=spec.package_path, pipeline_root=config.pipeline_root, enabled=True,
            service_account=spec.service_account or None)
    return run.recurring_run_id


def create_schedule(config: PipelineConfig, spec: ScheduleSpec) -> str:
    if spec.target == "vertex":
        return create_vertex_schedule(config, spec)
    host = spec.kfp_host or os.environ.get(KFP_HOST_ENV, "")
    if not host:
        raise ConfigError(f"Set --kfp-host (or ${KFP_HOST_ENV}) to the KFP API, e.g. "
                          "http://localhost:8080 after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`.")
    return create_kfp_recurring_run(config, spec, host)


# ------------------------------------------------------------------------------------------------- dry run
def _vertex_responder(method: str, path: str, body: Any) -> Tuple[int, Dict]:
    if method == "POST" and path.split("?")[0].endswith("/schedules"):
        parent = path.split("?")[0][len("/v1/"):-len("/schedules")]
        return 200, {**body, "name": f"{parent}/schedules/dry-run", "state": "ACTIVE"}
    return 404, {"error": {"code": 404, "message": f"dry run: unexpected {method} {path}"}}


def _kfp_responder(experiment: str):
    def respond(method: str, path: str, body: Any) -> Tuple[int, Dict]:
        route = path.split("?")[0]
        if route == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False}
        if method == "GET" and route == "/apis/v2beta1/experiments":
            # Answer as if the experiment exists: the recurring run then names its (placeholder) id.
            return 200, {"experiments": [{"experiment_id": DRY_RUN_EXPERIMENT_ID, "display_name": experiment}],
                         "total_size": 1}
        if method == "POST" and route == "/apis/v2beta1/recurringruns":
            return 200, {**body, "recurring_run_id": "dry-run"}
        return 404, {"error": f"dry run: unexpected {method} {path}"}
    return respond


def dry_run(config: PipelineConfig, spec: ScheduleSpec) -> List[loopback.RecordedRequest]:
    """Runs the real client against a loopback endpoint; returns the requests it sent, in order."""
    if spec.target == "vertex":
        from google.auth.credentials import AnonymousCredentials  # pylint: disable=import-outside-toplevel
        with loopback.RecordingEndpoint(_vertex_responder) as endpoint:
            create_vertex_schedule(config, spec, api_endpoint=endpoint.url, credentials=AnonymousCredentials())
    else:
        with loopback.RecordingEndpoint(_kfp_responder(spec.experiment)) as endpoint:
            create_kfp_recurring_run(config, spec, host=endpoint.url)
    return endpoint.requests


def real_base_url(config: PipelineConfig, spec: ScheduleSpec) -> str:
    """Where a run without --dry-run sends the requests."""
    if spec.target == "vertex":
        return "https://" + vertex_endpoint(config)
    return spec.kfp_host or os.environ.get(KFP_HOST_ENV) or "<--kfp-host>"
