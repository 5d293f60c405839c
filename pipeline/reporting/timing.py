"""Where a run's time went: wall time, CPU time and peak memory of each pipeline component.

A local run measures every component while TFX's LocalDagRunner runs it in this process (`ComponentMonitor`, which
wraps the portable Launcher's `launch`, the call that runs one node: driver, executor, publishing): wall seconds,
this process's CPU seconds (user + system of all its threads, plus children it waited for) and the peak resident
set size, sampled every `SAMPLE_SECONDS`. Components share the process, so a component's CPU seconds include
threads an earlier one left running (tf.data, Beam and TensorFlow pools), and its peak RSS is the process's peak
while it ran, memory left by earlier components included; a spike shorter than the sampling interval can be missed.

ML Metadata adds, for the same run, each component's execution state (a cache hit is "cached") and the execution's
wall time (from its registration to the publication of its outputs), the only figure there is for a run executed
elsewhere (`from_metadata`).
"""
import contextlib
import dataclasses
import json
import os
import threading
import time
from typing import Dict, List, Optional

import psutil
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration.portable import launcher as tfx_launcher

SAMPLE_SECONDS = 0.1
TIMING_FILE_SUFFIX = ".timing.json"
LATEST_TIMING = "latest.timing.json"
# Components below this wall time are summed into one line of the run summary (the report lists all).
SUMMARY_MIN_SECONDS = 1.0

_STATUS = {metadata_store_pb2.Execution.COMPLETE: "ran", metadata_store_pb2.Execution.CACHED: "cached",
           metadata_store_pb2.Execution.FAILED: "failed", metadata_store_pb2.Execution.RUNNING: "running",
           metadata_store_pb2.Execution.CANCELED: "canceled", metadata_store_pb2.Execution.NEW: "new"}


# Components shorter than this get no "cores busy" figure (see ComponentTiming.cores_busy).
CORES_MIN_SECONDS = 0.1


@dataclasses.dataclass
class ComponentTiming:
    """One component of one run. Seconds are wall-clock or CPU seconds; None: not measured (see the module doc)."""

    component: str  # the pipeline node id, e.g. "Trainer"
    status: str = "ran"  # ran, cached, failed, ... (ML Metadata's execution state), or "ran" when only measured
    wall_seconds: float = 0.0
    cpu_seconds: Optional[float] = None
    peak_rss_bytes: Optional[int] = None

    @property
    def cores_busy(self) -> Optional[float]:
        """CPU seconds per wall second: 1.0 is one core kept busy for the whole component; None under
        CORES_MIN_SECONDS of wall time, where the CPU clock's resolution makes the ratio noise (1.5 for an Importer)."""
        if self.cpu_seconds is None or self.wall_seconds < CORES_MIN_SECONDS:
            return None
        return self.cpu_seconds / self.wall_seconds


@dataclasses.dataclass
class RunTiming:
    """Every component of a run in execution order, the whole run's wall seconds and the machine's core count."""

    components: List[ComponentTiming] = dataclasses.field(default_factory=list)
    wall_seconds: float = 0.0
    cpu_count: Optional[int] = None  # the cores the measuring process could use; None from ML Metadata alone
    source: str = "measured"  # measured: this process ran the components; metadata: ML Metadata only
    # The whole run's, between and around the components too (None when not measured here).
    run_cpu_seconds: Optional[float] = None
    run_peak_rss_bytes: Optional[int] = None

    @property
    def cpu_seconds(self) -> Optional[float]:
        if self.run_cpu_seconds is not None:
            return self.run_cpu_seconds
        measured = [c.cpu_seconds for c in self.components if c.cpu_seconds is not None]
        return sum(measured) if measured else None

    @property
    def peak_rss_bytes(self) -> Optional[int]:
        measured = [c.peak_rss_bytes for c in self.components if c.peak_rss_bytes is not None]
        if self.run_peak_rss_bytes is not None:
            measured.append(self.run_peak_rss_bytes)
        return max(measured) if measured else None

    def to_json(self) -> Dict:
        return {"wall_seconds": round(self.wall_seconds, 3), "cpu_seconds": _rounded(self.cpu_seconds),
                "peak_rss_bytes": self.peak_rss_bytes, "cpu_count": self.cpu_count, "source": self.source,
                "components": [{"component": c.component, "status": c.status,
                                "wall_seconds": round(c.wall_seconds, 3), "cpu_seconds": _rounded(c.cpu_seconds),
                                "cores_busy": _rounded(c.cores_busy, 2), "peak_rss_bytes": c.peak_rss_bytes}
                               for c in self.components]}

    def render(self) -> List[str]:
        """The run summary's lines: the totals, then the components that took at least SUMMARY_MIN_SECONDS."""
        if not self.components:
            return []
        totals = [f"{_duration(self.wall_seconds)} in all"]
        if self.cpu_seconds is not None:
            totals.append(f"{_duration(self.cpu_seconds)} CPU" + (f" on {self.cpu_count} cores" if self.cpu_count
                                                                   else ""))
        if self.peak_rss_bytes is not None:
            totals.append(f"peak memory {_gigabytes(self.peak_rss_bytes)}")
        lines = ["  time        " + ", ".join(totals),
                 f"              {'component':<24}{'wall':>9}{'CPU':>9}{'cores':>7}{'peak RSS':>10}"]
        shown = [c for c in self.components if c.wall_seconds >= SUMMARY_MIN_SECONDS]
        for c in shown:
            cores = "" if c.cores_busy is None else f"{c.cores_busy:.1f}"
            lines.append(f"              {c.component + (' (cached)' if c.status == 'cached' else ''):<24}"
                         f"{c.wall_seconds:>8.1f}s{_seconds(c.cpu_seconds):>9}{cores:>7}"
                         f"{_gigabytes(c.peak_rss_bytes):>10}")
        rest = [c for c in self.components if c not in shown]
        if rest:
            lines.append(f"              {len(rest)} more under {SUMMARY_MIN_SECONDS:g} s each, "
                         f"{sum(c.wall_seconds for c in rest):.1f} s together")
        return lines


def _rounded(value: Optional[float], digits: int = 3) -> Optional[float]:
    return None if value is None else round(value, digits)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _seconds(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.1f}s"


def _gigabytes(value: Optional[int]) -> str:
    return "" if value is None else f"{value / 1e9:.2f} GB"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), which a container or taskset can make fewer than the
    machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ComponentMonitor:
    """Measures each component LocalDagRunner runs in this process.

    Use as a context manager around LocalDagRunner().run(...): while it is on, TFX's portable Launcher.launch (one
    call per node) is wrapped to measure the node. `timing` then holds the components in the order they ran, the
    whole run's wall and CPU seconds, and its peak RSS. A component that raised is measured up to the failure and
    marked "failed". One monitor at a time per process (a local run holds the output folder's lock anyway).
    """

    def __init__(self, sample_seconds: float = SAMPLE_SECONDS):
        self._process = psutil.Process()
        self._sample_seconds = sample_seconds
        self._lock = threading.Lock()
        self._run_peak = 0
        self._current: Optional[ComponentTiming] = None
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="hubtfx-component-monitor", daemon=True)
        self._original_launch = None
        self._run_started = self._run_cpu = 0.0
        self.timing = RunTiming(cpu_count=usable_cores())

    def __enter__(self) -> "ComponentMonitor":
        self._run_started, self._run_cpu = time.perf_counter(), self._cpu()
        self._run_peak = self._process.memory_info().rss
        self._original_launch = tfx_launcher.Launcher.launch
        monitor, original = self, self._original_launch

        def launch(launcher_self, *args, **kwargs):
            # pylint: disable=protected-access
            with monitor.measuring(launcher_self._pipeline_node.node_info.id):
                return original(launcher_self, *args, **kwargs)

        tfx_launcher.Launcher.launch = launch
        self._sampler.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        tfx_launcher.Launcher.launch = self._original_launch
        self._stop.set()
        self._sampler.join()
        self.timing.wall_seconds = time.perf_counter() - self._run_started
        self.timing.run_cpu_seconds = self._cpu() - self._run_cpu
        self.timing.run_peak_rss_bytes = max(self._run_peak, self._process.memory_info().rss)

    @contextlib.contextmanager
    def measuring(self, component: str):
        """Measures `component` for the duration (marked "failed" if it raises)."""
        with self._lock:
            self._current = ComponentTiming(component, peak_rss_bytes=self._process.memory_info().rss)
        started_wall, started_cpu = time.perf_counter(), self._cpu()
        status = "failed"
        try:
            yield
            status = "ran"
        finally:
            with self._lock:
                current, self._current = self._current, None
            current.wall_seconds = time.perf_counter() - started_wall
            current.cpu_seconds = self._cpu() - started_cpu
            current.peak_rss_bytes = max(current.peak_rss_bytes, self._process.memory_info().rss)
            current.status = status
            self.timing.components.append(current)

    def _cpu(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system + times.children_user + times.children_system

    def _sample(self) -> None:
        while not self._stop.wait(self._sample_seconds):
            rss = self._process.memory_info().rss
            with self._lock:
                self._run_peak = max(self._run_peak, rss)
                if self._current is not None:
                    self._current.peak_rss_bytes = max(self._current.peak_rss_bytes, rss)


def from_metadata(store, pipeline_name: str) -> RunTiming:
    """The latest run of `pipeline_name` as ML Metadata recorded it: each node's execution state and wall time
    (registration to publication), in execution order. Empty when the pipeline has no execution."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return RunTiming(source="metadata")
    executions = store.get_executions_by_context(pipeline.id)  # ML Metadata's Python API has no "newest only"
    if not executions:
        return RunTiming(source="metadata")
    run_type = store.get_context_type("pipeline_run")
    node_type = store.get_context_type("node")
    latest_run = max((c for c in store.get_contexts_by_execution(max(executions, key=lambda e: e.id).id)
                      if c.type_id == run_type.id), key=lambda c: c.id, default=None)
    if latest_run is None:
        return RunTiming(source="metadata")
    run_executions = sorted(store.get_executions_by_context(latest_run.id), key=lambda e: e.id)
    components = []
    for execution in run_executions:
        nodes = [c.name for c in store.get_contexts_by_execution(execution.id) if c.type_id == node_type.id]
        name = nodes[0].split(".", 1)[-1] if nodes else f"execution {execution.id}"
        components.append(ComponentTiming(
            name, _STATUS.get(execution.last_known_state, "unknown"),
            max(execution.last_update_time_since_epoch - execution.create_time_since_epoch, 0) / 1000.0))
    first = min(e.create_time_since_epoch for e in run_executions)
    last = max(e.last_update_time_since_epoch for e in run_executions)
    return RunTiming(components, (last - first) / 1000.0, source="metadata")


def combine(measured: RunTiming, recorded: RunTiming) -> RunTiming:
    """The measured figures, with each component's status from ML Metadata; components only one side knows are
    kept as that side has them (ML Metadata's order first)."""
    by_name = {c.component: c for c in measured.components}
    components = []
    for known in recorded.components:
        timing = by_name.pop(known.component, None)
        components.append(dataclasses.replace(timing, status=known.status) if timing else known)
    components += list(by_name.values())
    return dataclasses.replace(measured, components=components,
                               wall_seconds=measured.wall_seconds or recorded.wall_seconds,
                               source=measured.source if measured.components else recorded.source)


def write_json(timing: RunTiming, folder: str, stem: str) -> str:
    """Writes <folder>/<stem>.timing.json and a copy as latest.timing.json; returns the first path."""
    os.makedirs(folder, exist_ok=True)
    text = json.dumps(timing.to_json(), indent=2)
    path = os.path.join(folder, stem + TIMING_FILE_SUFFIX)
    for target in (path, os.path.join(folder, LATEST_TIMING)):
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    return path
