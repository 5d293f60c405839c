"""Composition: the anomaly gate precedes Transform, a span window feeds training, the pusher is atomic."""
import dataclasses

import pytest

from hubtfx.components.pusher.component import AtomicPusher
from hubtfx.pipeline.config import ConfigError, PipelineConfig
from hubtfx.pipeline.pipeline import create_components

RESOLVED = PipelineConfig(module_path="/m", module_sha256="abc", image_size=(32, 32), use_spans=True)


def _by_id(components):
    return {c.id: c for c in components}


def test_transform_waits_for_the_anomaly_gate_and_the_pusher_is_atomic():
    components = _by_id(create_components(RESOLVED))
    assert components["AnomalyGate"] in components["Transform"].upstream_nodes
    assert isinstance(components["AtomicPusher"], AtomicPusher)
    assert "span_window_resolver" not in components


def test_a_span_window_feeds_transform_and_trainer_but_evaluation_stays_on_the_latest_span():
    components = _by_id(create_components(dataclasses.replace(RESOLVED, span_window=3)))
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
