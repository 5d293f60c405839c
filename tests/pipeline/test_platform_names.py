"""Names and values Kubeflow Pipelines / Vertex AI refuse are refused when the config is validated (issue 13,
case 06): every command exits 2 with the allowed form, before anything is compiled, run or sent."""
import os
import re
import subprocess
import sys
from datetime import datetime

import pytest

from hubtfx.pipeline import platform_names
from hubtfx.pipeline.cli import commands
from hubtfx.pipeline.config import ConfigError, PipelineConfig

CLUSTER = ["--image", "us-docker.pkg.dev/hubtfx-test/pipelines/hubtfx:1", "--data-root", "gs://hubtfx-test/flowers",
           "--output-dir", "gs://hubtfx-test/run", "--gcp-project", "hubtfx-test"]


@pytest.mark.parametrize("name", ["hubtfx", "flowers-retrain", "a", "flowers-2024", "x" * 113])
def test_names_every_tool_accepts_pass(name):
    PipelineConfig(pipeline_name=name).validate()


@pytest.mark.parametrize("name, suggestion", [
    ("flowers_retrain", "flowers-retrain"),      # KFP SDK / TFX compiler: no '_' (kubeflow/pipelines#11423)
    ("FlowersRetrain", "flowers-retrain"),       # no uppercase
    ("flowers-retrain-", "flowers-retrain"),     # KFP servers after kubeflow/pipelines#11952: end alphanumeric
    ("2024-flowers", "hubtfx-2024-flowers"),     # Vertex job ID <name>-<timestamp> must start with a letter
    ("flowers.retrain", "flowers-retrain"),      # DNS-1123 allows '.', TFX/KFP SDK do not
    ("x" * 114, "x" * 113),                      # Vertex job ID at most 128 characters
    ("", "hubtfx"),
])
def test_refused_names_state_the_allowed_form_and_a_suggestion(name, suggestion):
    with pytest.raises(ConfigError) as error:
        PipelineConfig(pipeline_name=name).validate()
    message = str(error.value)
    assert "pipeline_name" in message and repr(name) in message and platform_names.PIPELINE_NAME_FORM in message
    assert repr(suggestion) in message
    PipelineConfig(pipeline_name=suggestion).validate()  # The suggestion itself is accepted.


def test_the_rule_is_at_least_as_strict_as_each_tool():
    """Every name hubtfx accepts passes TFX's and the KFP SDK's own checks, the KFP server's DNS-1123 rule and the
    Vertex SDK's job-ID rule (checked with those libraries' own code and patterns where they are importable)."""
    from kfp.dsl import utils as kfp_utils
    from google.cloud.aiplatform.constants import pipeline as vertex_pipeline
    from tfx.orchestration.kubeflow.v2 import pipeline_builder
    dns1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    timestamp = datetime(2026, 11, 29, 12, 0, 0).strftime("%Y%m%d%H%M%S")
    for name in ["hubtfx", "a", "flowers-2024", "a-b-c", "x" * 113, "flowers--retrain"]:
        PipelineConfig(pipeline_name=name).validate()
        kfp_utils.validate_pipeline_name(name)
        pipeline_builder._check_name(name)
        assert dns1123.match(name)
        assert vertex_pipeline._VALID_NAME_PATTERN.match(f"{name}-{timestamp}")


@pytest.mark.parametrize("change, field", [
    ({"model_name": "flowers/v2"}, "model_name"),
    ({"model_name": "my model"}, "model_name"),
    ({"model_name": ".."}, "model_name"),
    ({"image": "us-docker.pkg.dev/Project/Repo/hubtfx:1"}, "Repository paths must be lowercase"),
    ({"image": "https://gcr.io/p/hubtfx:1"}, "Leave out the scheme"),
    ({"image": "gcr.io/p/hubtfx:1 "}, "contains spaces"),
    ({"image": "gcr.io/p/hubtfx:"}, "image"),
    ({"gcp_project": "My Project"}, "not a Google Cloud project ID"),
    ({"gcp_project": "proj"}, "not a Google Cloud project ID"),
    ({"dataflow_machine_type": "N1-Standard-4"}, "dataflow_machine_type"),
    ({"dataflow_machine_type": "n1_standard_4"}, "dataflow_machine_type"),
])
def test_other_constrained_values_are_refused_at_config_time(change, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        PipelineConfig(**change).validate()


@pytest.mark.parametrize("change", [
    {"image": "us-central1-docker.pkg.dev/my-project/hubtfx/hubtfx:1"},
    {"image": "localhost:5000/hubtfx@sha256:" + "a" * 64},
    {"image": "hubtfx"},
    {"gcp_project": "example.com:my-project"},
    {"gcp_project": "123456789012"},
    {"dataflow_machine_type": "custom-4-16384"},
    {"model_name": "Flowers_v2.1"},
])
def test_valid_forms_pass(change):
    PipelineConfig(**change).validate()


def test_vertex_region_is_checked_with_the_sdks_list():
    config = PipelineConfig(gcp_region="us-central")
    platform_names.check_target(config, "kubeflow")  # KFP does not read the region.
    with pytest.raises(ConfigError, match="not a Vertex AI region"):
        platform_names.check_target(config, "vertex")
    platform_names.check_target(PipelineConfig(gcp_region="europe-west4"), "vertex")


@pytest.mark.parametrize("target, account, message", [
    ("vertex", "pipelines", "e-mail address"),
    ("kubeflow", "pipelines@my-project.iam.gserviceaccount.com", "That is a Google service account"),
    ("kubeflow", "Pipeline_Runner", "not a Kubernetes service account name"),
])
def test_service_accounts_fit_the_target(target, account, message):
    with pytest.raises(ConfigError, match=message):
        platform_names.check_schedule(target, "hubtfx-schedule", account, "hubtfx")


def test_schedule_names_are_checked():
    platform_names.check_schedule("vertex", "nightly retrain ✓", "runner@p-123456.iam.gserviceaccount.com", "x")
    platform_names.check_schedule("kubeflow", "nightly", "pipeline-runner", "hubtfx")
    with pytest.raises(ConfigError, match="1 to 128 characters"):
        platform_names.check_schedule("vertex", "x" * 129, None, "hubtfx")
    with pytest.raises(ConfigError, match="1 to 128 characters"):
        platform_names.check_schedule("kubeflow", "  ", None, "hubtfx")
    with pytest.raises(ConfigError, match="--experiment"):
        platform_names.check_schedule("kubeflow", "nightly", None, " ")


@pytest.mark.parametrize("argv", [
    ["run"],
    ["retrain"],
    ["compile", "--target", "kubeflow", "--output", "{tmp}/spec.yaml", *CLUSTER],
    ["compile", "--target", "vertex", "--output", "{tmp}/spec.json", *CLUSTER],
    ["schedule", "--target", "vertex", "--cron", "0 3 * * 1", "--dry-run", *CLUSTER],
    ["schedule", "--target", "kubeflow", "--cron", "0 3 * * 1", "--dry-run", *CLUSTER],
])
def test_every_command_refuses_the_name_before_anything_runs(argv, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] in ("run", "retrain"):
        argv += ["--output-dir", str(out), "--data-root", str(tmp_path / "no-data")]
    assert commands.main(argv + ["--pipeline-name", "flowers_retrain"]) == commands.EXIT_USAGE
    err = capsys.readouterr().err
    assert "pipeline_name 'flowers_retrain'" in err and "Traceback" not in err
    assert not list(tmp_path.glob("spec.*")) and not (out / "pipeline_root").exists()


def test_schedule_refuses_a_google_account_for_kubeflow_before_compiling(tmp_path, capsys):
    argv = ["schedule", "--target", "kubeflow", "--cron", "0 3 * * 1", "--dry-run", *CLUSTER,
            "--service-account", "pipelines@hubtfx-test.iam.gserviceaccount.com"]
    assert commands.main(argv) == commands.EXIT_USAGE
    captured = capsys.readouterr()
    assert "Kubernetes service account" in captured.err and "Dry run" not in captured.out  # Nothing compiled.


@pytest.mark.parametrize("name, targets", [
    ("flowers_retrain", ("kubeflow", "vertex")),
    ("FlowersRetrain", ("kubeflow", "vertex")),
    ("flowers-retrain-", ("kubeflow", "vertex")),
])
def test_case_06_compile_exits_2_in_a_fresh_process(tmp_path, name, targets):
    """Case 06 as the field report runs it: the README's cluster YAML with the reported pipeline names."""
    config = tmp_path / "cluster.yaml"
    config.write_text("image: us-central1-docker.pkg.dev/example-project/hubtfx/hubtfx:1\n"
                      "gcp_project: example-project\ngcp_region: us-central1\n"
                      "data_root: gs://example-bucket/flowers\noutput_dir: gs://example-bucket/hubtfx\n"
                      f"pipeline_name: {name}\n")
    for target in targets:
        output = tmp_path / f"{target}.json"
        result = subprocess.run(
            [sys.executable, "-m", "hubtfx.pipeline.cli", "compile", "--target", target, "--config", str(config),
             "--output", str(output)], capture_output=True, text=True, timeout=300,
            env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"pipeline_name {name!r}" in result.stderr and "'flowers-retrain'" in result.stderr
        assert "Traceback" not in result.stderr and "%" not in result.stderr and not output.exists()
