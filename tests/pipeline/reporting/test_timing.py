"""Per-component timing: the monitor on this process's real CPU and memory; ML Metadata's record and the
launcher-measured figures of a real local run (the shared `finished_run`)."""
import os
import time

import numpy as np
import pytest
from tfx.orchestration.portable import launcher as tfx_launcher
from ml_metadata.metadata_store import metadata_store

from hubtfx.pipeline import local_runner
from hubtfx.pipeline.reporting import timing


def _component(monitor, name, work):
    with monitor.measuring(name):
        work()


def _busy(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_each_component_gets_its_own_wall_time_cpu_time_and_peak_memory():
    held = []

    def allocate():
        held.append(np.ones(300 * 1024 * 1024 // 8))  # 300 MB, touched
        time.sleep(0.3)  # the sampler sees it
        held.clear()

    with timing.ComponentMonitor(sample_seconds=0.02) as monitor:
        _component(monitor, "Sleeper", lambda: time.sleep(0.5))
        _component(monitor, "Spinner", lambda: _busy(0.5))
        _component(monitor, "Allocator", allocate)
        _busy(0.3)  # between components: in the run's CPU time, in no component's
    sleeper, spinner, allocator = monitor.timing.components
    assert [c.component for c in monitor.timing.components] == ["Sleeper", "Spinner", "Allocator"]
    assert all(c.status == "ran" for c in monitor.timing.components)
    assert sleeper.wall_seconds == pytest.approx(0.5, abs=0.2) and sleeper.cpu_seconds < 0.2
    assert spinner.cpu_seconds >= 0.45 and spinner.cores_busy > 0.5
    # The array is freed before the component ends: only sampling during it can have seen the peak.
    assert allocator.peak_rss_bytes - sleeper.peak_rss_bytes > 250e6
    assert monitor.timing.peak_rss_bytes >= allocator.peak_rss_bytes
    assert monitor.timing.wall_seconds >= sum(c.wall_seconds for c in monitor.timing.components) + 0.25
    assert monitor.timing.cpu_seconds >= sum(c.cpu_seconds for c in monitor.timing.components) + 0.25
    assert 1 <= monitor.timing.cpu_count <= (os.cpu_count() or 1)


def test_a_component_that_raises_is_measured_and_marked_failed():
    with timing.ComponentMonitor() as monitor:
        with pytest.raises(RuntimeError):
            with monitor.measuring("Trainer"):
                raise RuntimeError("out of memory")
        _component(monitor, "Pusher", lambda: None)
    trainer, pusher = monitor.timing.components
    assert (trainer.component, trainer.status, pusher.status) == ("Trainer", "failed", "ran")
    assert trainer.cpu_seconds is not None


def test_the_monitor_wraps_tfxs_launcher_only_while_it_is_on():
    original = tfx_launcher.Launcher.launch
    with timing.ComponentMonitor():
        assert tfx_launcher.Launcher.launch is not original
    assert tfx_launcher.Launcher.launch is original
    with pytest.raises(ValueError):
        with timing.ComponentMonitor():
            raise ValueError("a failing run")
    assert tfx_launcher.Launcher.launch is original


def test_metadata_records_every_component_of_the_latest_run_with_its_state(finished_run):
    config, _, summary = finished_run
    store = metadata_store.MetadataStore(local_runner.metadata_connection_config(config))
    recorded = timing.from_metadata(store, config.pipeline_name)
    names = [c.component for c in recorded.components]
    assert names[0] == "ImageFolderExampleGen" and {"Transform", "Trainer", "Evaluator", "AtomicPusher"} <= set(names)
    # finished_run is shared: another test may have run the pipeline again on it (cache hits) before this one.
    assert {c.status for c in recorded.components} <= {"ran", "cached"}
    assert recorded.source == "metadata" and recorded.wall_seconds >= max(c.wall_seconds for c in recorded.components)
    # The run's summary holds the measured figures under the same names, in the same order.
    assert [c.component for c in summary.timing.components] == names
    assert all(c.cpu_seconds is not None for c in summary.timing.components)
    assert all(c.status == "ran" for c in summary.timing.components)  # the first run on an empty output folder
    assert timing.from_metadata(store, "no-such-pipeline").components == []


def test_combine_takes_the_measurements_and_the_recorded_states():
    measured = timing.RunTiming([timing.ComponentTiming("Transform", "ran", 2.0, 3.0, 10)], wall_seconds=5.0)
    recorded = timing.RunTiming([timing.ComponentTiming("ExampleGen", "cached", 0.1),
                                 timing.ComponentTiming("Transform", "cached", 1.5)], wall_seconds=4.0,
                                source="metadata")
    combined = timing.combine(measured, recorded)
    assert [(c.component, c.status, c.wall_seconds, c.cpu_seconds) for c in combined.components] == [
        ("ExampleGen", "cached", 0.1, None), ("Transform", "cached", 2.0, 3.0)]
    assert combined.wall_seconds == 5.0 and combined.source == "measured"
    lines = combined.render()
    assert "Transform (cached)" in lines[2] and "1 more under 1 s each, 0.1 s together" in lines[-1]

