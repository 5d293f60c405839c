"""`hubtfx schedule`: the requests the real Vertex AI and kfp clients send, recorded at a loopback endpoint."""
import json

import pytest

from hubtfx.kubeflow import loopback, schedule
from hubtfx.pipeline.cli.commands import main
from hubtfx.pipeline.config import ConfigError

FLAGS = ["--image", "us-docker.pkg.dev/hubtfx-test/pipelines/hubtfx:1", "--data-root", "gs://hubtfx-test/flowers",
         "--output-dir", "gs://hubtfx-test/run", "--gcp-project", "hubtfx-test"]


def printed_requests(text: str):
    """The JSON documents `--dry-run` prints after its first line."""
    decoder, rest, found = json.JSONDecoder(), text.split("\n", 1)[1].strip(), []
    while rest:
        document, end = decoder.raw_decode(rest)
        found.append(document)
        rest = rest[end:].strip()
    return found


def test_vertex_dry_run_prints_the_create_schedule_request(feature_vector_module, capsys):
    assert main(["schedule", "--target", "vertex", "--cron", "0 3 * * 1", "--dry-run", "--cv-folds", "4",
                 "--service-account", "runner@hubtfx-test.iam.gserviceaccount.com", *FLAGS]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Dry run: these requests would go to https://us-central1-aiplatform.googleapis.com;")
    [request] = printed_requests(out)
    assert request["method"] == "POST"
    assert request["path"].startswith("/v1/projects/hubtfx-test/locations/us-central1/schedules")
    body = request["body"]
    assert body["cron"] == "0 3 * * 1" and body["displayName"] == "hubtfx-schedule"
    assert body["maxConcurrentRunCount"] == "1"
    job = body["createPipelineJobRequest"]["pipelineJob"]
    assert job["serviceAccount"] == "runner@hubtfx-test.iam.gserviceaccount.com"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://hubtfx-test/run/pipeline_root/hubtfx"
    values = job["runtimeConfig"]["parameterValues"]
    assert values["data_root"] == "gs://hubtfx-test/flowers"
    assert json.loads(values["training_config"])["cv_folds"] == 4
    trainer = job["pipelineSpec"]["deploymentSpec"]["executors"]["Trainer_executor"]["container"]["resources"]
    assert trainer["accelerator"]["type"] == "NVIDIA_TESLA_T4"


def test_kubeflow_dry_run_prints_the_recurring_run_request(feature_vector_module, capsys):
    assert main(["schedule", "--target", "kubeflow", "--cron", "0 3 * * 1", "--dry-run",
                 "--kfp-host", "https://kfp.example.com", "--experiment", "retraining", *FLAGS]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Dry run: these requests would go to https://kfp.example.com;")
    requests = printed_requests(out)
    assert [(r["method"], r["path"].split("?")[0]) for r in requests] == [
        ("GET", "/apis/v2beta1/healthz"), ("GET", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/recurringruns")]
    assert "retraining" in requests[1]["path"]
    body = requests[2]["body"]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"  # KFP's cron has a seconds field
    assert body["experiment_id"] == schedule.DRY_RUN_EXPERIMENT_ID
    assert body["display_name"] == "hubtfx-schedule" and body["mode"] == "ENABLE" and body["no_catchup"] is True
    assert body["runtime_config"]["pipeline_root"] == "gs://hubtfx-test/run/pipeline_root/hubtfx"
    assert body["runtime_config"]["parameters"]["data_root"] == "gs://hubtfx-test/flowers"
    trainer = body["pipeline_spec"]["deploymentSpec"]["executors"]["Trainer_executor"]["container"]["resources"]
    assert trainer["accelerator"] == {"type": "nvidia.com/gpu", "count": "1"}


def test_kfp_client_creates_a_missing_experiment_first(tmp_path, cluster_config):
    """The non-dry-run path against a server that does not know the experiment yet."""
    package = tmp_path / "pipeline.yaml"
    package.write_text("pipelineInfo: {name: hubtfx}\nroot: {dag: {tasks: {}}}\nschemaVersion: 2.1.0\n")

    def respond(method, path, body):
        route = path.split("?")[0]
        if route.endswith("/healthz"):
            return 200, {"multi_user": False}
        if method == "GET" and route.endswith("/experiments"):
            return 200, {"experiments": [], "total_size": 0}
        if method == "POST" and route.endswith("/experiments"):
            return 200, {**body, "experiment_id": "exp-7"}
        if method == "POST" and route.endswith("/recurringruns"):
            return 200, {**body, "recurring_run_id": "rr-1"}
        return 404, {}

    spec = schedule.ScheduleSpec(target="kubeflow", cron="30 2 * * *", display_name="nightly",
                                 package_path=str(package), parameter_values={"data_root": "gs://x/y"})
    with loopback.RecordingEndpoint(respond, lifetime_s=30) as endpoint:
        assert schedule.create_kfp_recurring_run(cluster_config, spec, host=endpoint.url) == "rr-1"
    created = [r for r in endpoint.requests if r.method == "POST"]
    assert created[0].body["display_name"] == "hubtfx"
    assert created[1].body["experiment_id"] == "exp-7"
    assert created[1].body["runtime_config"]["parameters"] == {"data_root": "gs://x/y"}


def test_vertex_schedule_returns_the_created_resource(cluster_config, vertex_spec):
    from google.auth.credentials import AnonymousCredentials
    spec = schedule.ScheduleSpec(target="vertex", cron="0 3 * * 1", display_name="weekly",
                                 package_path=vertex_spec[0], parameter_values={})
    with loopback.RecordingEndpoint(schedule._vertex_responder, lifetime_s=30) as endpoint:  # pylint: disable=protected-access
        name = schedule.create_vertex_schedule(cluster_config, spec, api_endpoint=endpoint.url,
                                               credentials=AnonymousCredentials())
    assert name == "projects/hubtfx-test/locations/us-central1/schedules/dry-run"
    # Anonymous credentials in a dry run: no token is ever put on the wire.
    assert all("authorization" not in {k.lower() for k in r.headers} for r in endpoint.requests)


@pytest.mark.parametrize("cron", ["0 3 * *", "0 3 * * 1 2", "every monday", ""])
def test_cron_must_have_five_fields(cron):
    with pytest.raises(ConfigError, match="5-field cron"):
        schedule.check_cron(cron)


def test_kubeflow_schedule_needs_a_host(cluster_config, monkeypatch):
    monkeypatch.delenv(schedule.KFP_HOST_ENV, raising=False)
    spec = schedule.ScheduleSpec(target="kubeflow", cron="0 3 * * 1", display_name="x", package_path="p.yaml",
                                 parameter_values={})
    with pytest.raises(ConfigError, match="--kfp-host"):
        schedule.create_schedule(cluster_config, spec)


def test_loopback_endpoint_stops_by_itself():
    endpoint = loopback.RecordingEndpoint(lambda *_: (200, {}), lifetime_s=0.2)
    with endpoint:
        endpoint._thread.join(timeout=5)  # pylint: disable=protected-access
        assert not endpoint._thread.is_alive()  # pylint: disable=protected-access
