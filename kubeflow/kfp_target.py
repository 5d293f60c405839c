"""What `hubtfx compile --target kubeflow` changes so that open-source Kubeflow Pipelines 2.x can run the spec.

TFX's KubeflowV2DagRunner writes a spec for Vertex AI Pipelines. Open-source KFP 2.x differs in three ways that
matter here (KFP backend source: compiler/argocompiler, driver, component/launcher_v2.go, metadata/client.go):
- it has no resolver executor ("resolver executors not implemented"): the latest-blessed-model Resolver becomes
  kubeflow.served_baseline.ServedModelBaseline ("baseline = the model being served now");
- it ignores a container's `lifecycle.preCacheCheck`, in which Vertex runs TFX's ExampleGen driver: the driver
  runs in ExampleGen's own container instead (kubeflow.container_entrypoint, fix 2);
- it hands input artifacts over untyped, downloads them object by object and fails a task on any non-zero exit:
  every TFX container runs kubeflow.container_entrypoint, TFX's entrypoint with fixes 1, 3 and 4.

Caching: KFP's cache key is the task's inputs and parameters. ExampleGen's only input is the data_root string, so
with caching a scheduled run on new images in the same folder would get the old Examples; and the baseline's
only input is the serving folder, so every run would get the first run's (empty) baseline. Caching is therefore
off for these two tasks; the tasks after ExampleGen are cached as before (they see a new Examples artifact only
when ExampleGen ran).
"""
from typing import Dict, List

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.types import standard_component_specs

from hubtfx.kubeflow import container_entrypoint, served_baseline
from hubtfx.kubeflow.served_baseline import ServedModelBaseline

TFX_ENTRYPOINT = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
ENTRYPOINT = ["python", "-m", "hubtfx.kubeflow.container_entrypoint"]
TFX_EXAMPLE_GEN_DRIVER = "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"
BASELINE_ID = "served_model_baseline"


def replace_baseline_resolver(components: List, serving_dir: str) -> List:
    """The components with ServedModelBaseline feeding the Evaluator's baseline instead of the latest-blessed-model
    Resolver (to be called before the components go into a Pipeline)."""
    baseline_key = standard_component_specs.BASELINE_MODEL_KEY
    evaluators = [c for c in components if baseline_key in c.inputs]
    if len(evaluators) != 1:
        raise RuntimeError(f"Expected one component with a {baseline_key!r} input, found {len(evaluators)}.")
    [evaluator] = evaluators
    producer_id = evaluator.inputs[baseline_key].producer_component_id
    [resolver] = [c for c in components if c.id == producer_id]
    if not isinstance(resolver, tfx.dsl.Resolver):
        raise RuntimeError(f"The Evaluator's baseline comes from {producer_id}, not a Resolver; nothing to replace.")
    baseline = ServedModelBaseline(serving_dir=serving_dir).with_id(BASELINE_ID)
    evaluator.spec.inputs[baseline_key] = baseline.outputs[served_baseline.MODEL_KEY]
    return [baseline if c is resolver else c for c in components]


def drop_repeated_inputs(components: List) -> List[str]:
    """Leaves out an optional input that repeats another input's channel; returns "component.input" per drop.

    Both backends record a task's inputs in ML Metadata as one INPUT event per (input name, artifact), and ML
    Metadata refuses a second INPUT event for the same artifact and execution ("Given event already exists"), so
    a task that gets one artifact under two names fails before it starts (KFP's driver: CreateExecution).
    """
    dropped = []
    for component in components:
        seen = []
        for key in list(component.inputs):
            channel = component.inputs[key]
            if any(channel is other for other in seen) and component.spec.INPUTS[key].optional:
                del component.spec.inputs[key]
                dropped.append(f"{component.id}.{key}")
            else:
                seen.append(channel)
    return dropped


def adapt_spec(spec: Dict) -> Dict:
    """The compiled spec (a dict, as TFX returns it) with the entrypoint, driver and caching changes above."""
    proto = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    deployment = json_format.ParseDict(json_format.MessageToDict(proto.deployment_spec),
                                       pipeline_spec_pb2.PipelineDeploymentConfig())
    uncached_executors: List[str] = []
    for label, executor in deployment.executors.items():
        kind = executor.WhichOneof("spec")
        if kind == "resolver":
            raise RuntimeError(f"{label} is a resolver, which KFP 2.x cannot execute; replace it before compiling.")
        if kind != "container":
            continue
        container = executor.container
        if list(container.command) != TFX_ENTRYPOINT:
            raise RuntimeError(f"{label} runs {list(container.command)}, not TFX's entrypoint; adapt it explicitly.")
        container.command[:] = ENTRYPOINT
        if container.HasField("lifecycle"):
            hook = container.lifecycle.pre_cache_check
            if list(hook.command[-1:]) != [TFX_EXAMPLE_GEN_DRIVER]:
                raise RuntimeError(f"{label}'s preCacheCheck runs {list(hook.command)}, not ExampleGen's driver.")
            container.ClearField("lifecycle")
            container.args.insert(0, container_entrypoint.RUN_EXAMPLE_GEN_DRIVER)
            uncached_executors.append(label)
        if any(arg.endswith("served_baseline.Executor") for arg in container.args):
            uncached_executors.append(label)
    for task in proto.root.dag.tasks.values():
        component = proto.components[task.component_ref.name]
        if component.executor_label in uncached_executors:
            task.caching_options.enable_cache = False
    proto.deployment_spec.Clear()
    proto.deployment_spec.update(json_format.MessageToDict(deployment))
    return json_format.MessageToDict(proto)
