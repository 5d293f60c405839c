"""Composition: the anomaly gate precedes Transform, a span window feeds training, the pusher is atomic; the
pipeline is built only from a config and a ResolvedModule."""
import dataclasses

import pytest

from hubtfx.components.pusher.component import AtomicPusher
from hubtfx.pipeline.config import ConfigError, PipelineConfig
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule
from hubtfx.pipeline.pipeline import create_components, create_pipeline

CONFIG = PipelineConfig(use_spans=True)
MODULE = ResolvedModule(path="/m", sha256="abc", image_size=(32, 32))


def _by_id(components):
    return {c.id: c for c in components}


def test_transform_waits_for_the_anomaly_gate_and_the_pusher_is_atomic():
    components = _by_id(create_components(CONFIG, MODULE))
    assert components["AnomalyGate"] in components["Transform"].upstream_nodes
    assert isinstance(components["AtomicPusher"], AtomicPusher)
    assert "span_window_resolver" not in components


def test_a_span_window_feeds_transform_and_trainer_but_evaluation_stays_on_the_latest_span():
    components = _by_id(create_components(dataclasses.replace(CONFIG, span_window=3), MODULE))
    window = components["span_window_resolver"]
    assert window.exec_properties["resolver_class"].__name__ == "SpanRangeStrategy"
    assert window._config["range_config"].rolling_range.num_spans == 3  # pylint: disable=protected-access
    assert components["Transform"].inputs["examples"].producer_component_id == "span_window_resolver"
    assert components["Trainer"].inputs["examples"].producer_component_id == "span_window_resolver"
    assert components["Evaluator"].inputs["examples"].producer_component_id == "ImageFolderExampleGen"


def test_a_span_window_needs_spans():
    with pytest.raises(ConfigError, match="use_spans"):
        PipelineConfig(span_window=2).validate()
    with pytest.raises(ConfigError, match="at least 1"):
        PipelineConfig(span_window=0, use_spans=True).validate()


@pytest.mark.parametrize("build", [create_components, create_pipeline])
@pytest.mark.parametrize("module, got", [(None, "got nothing"), (CONFIG, "got a PipelineConfig"),
                                         ("/m", "got a str")])
def test_the_pipeline_refuses_a_missing_or_wrong_module_at_once(build, module, got):
    with pytest.raises(TypeError, match=f"{build.__name__} needs a ResolvedModule, {got}: .*module_resolution.resolve"):
        build(CONFIG, module)


@pytest.mark.parametrize("build", [create_components, create_pipeline])
def test_the_pipeline_refuses_a_missing_module_argument_and_swapped_arguments(build):
    with pytest.raises(TypeError, match="module"):
        build(CONFIG)  # pylint: disable=no-value-for-parameter
    with pytest.raises(TypeError, match=f"{build.__name__} needs a PipelineConfig as its first argument, got a "
                                        "ResolvedModule"):
        build(MODULE, CONFIG)


def test_a_resolved_module_is_frozen_and_complete():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MODULE.path = "/other"  # pylint: disable=assigning-non-slot
    with pytest.raises(ValueError, match="needs a path and a sha256"):
        ResolvedModule(path="", sha256="abc", image_size=(32, 32))
    with pytest.raises(ValueError, match="image ResolvedModule needs an"):
        ResolvedModule(path="/m", sha256="abc")
    with pytest.raises(ValueError, match="text ResolvedModule needs seq_length, a preprocessor"):
        ResolvedModule(path="/m", sha256="abc", modality="text", seq_length=128)
