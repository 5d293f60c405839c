"""Where a run's time went: wall time, CPU time and peak memory of each pipeline component.

A local run measures every component while TFX's LocalDagRunner runs it in this process (`ComponentMonitor`,
between the runner's "Component X is running." and "Component X is finished." log lines): wall seconds, this
process's CPU seconds (user + system of all its threads, plus children it waited for) and the peak resident set
size, sampled every `SAMPLE_SECONDS`. Components share the process, so a component's peak RSS includes what earlier
ones left in memory: it is the process's peak while that component ran.

ML Metadata adds, for the same run, each component's execution state (a cache hit is "cached") and the execution's
wall time (from its registration to the publication of its outputs), the only figure there is for a run executed
elsewhere (`from_metadata`).
"""
import dataclasses
import json
import logging
import os
import re
import threading
import time
from typing import Dict, List, Optional

import psutil
from absl import logging as absl_logging
from ml_metadata.proto import metadata_store_pb2

SAMPLE_SECONDS = 0.1
TIMING_FILE_SUFFIX = ".timing.json"
LATEST_TIMING = "latest.timing.json"
# Components below this wall time are summed into one line of the run summary (the report lists all).
SUMMARY_MIN_SECONDS = 1.0

# LocalDagRunner (tfx/orchestration/local/local_dag_runner.py, TFX 1.16) logs these through absl around each node.
COMPONENT_LINE = re.compile(r"Component (\S+) is (running|finished)\.")

_STATUS = {metadata_store_pb2.Execution.COMPLETE: "ran", metadata_store_pb2.Execution.CACHED: "cached",
           metadata_store_pb2.Execution.FAILED: "failed", metadata_store_pb2.Execution.RUNNING: "running",
           metadata_store_pb2.Execution.CANCELED: "canceled", metadata_store_pb2.Execution.NEW: "new"}


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
        """CPU seconds per wall second: 1.0 is one core kept busy for the whole component."""
        if self.cpu_seconds is None or self.wall_seconds <= 0:
            return None
        return self.cpu_seconds / self.wall_seconds


@dataclasses.dataclass
class RunTiming:
    """Every component of a run in execution order, the whole run's wall seconds and the machine's core count."""

    components: List[ComponentTiming] = dataclasses.field(default_factory=list)
    wall_seconds: float = 0.0
    cpu_count: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    source: str = "measured"  # measured: this process ran the components; metadata: ML Metadata only

    @property
    def cpu_seconds(self) -> Optional[float]:
        measured = [c.cpu_seconds for c in self.components if c.cpu_seconds is not None]
        return sum(measured) if measured else None

    @property
    def peak_rss_bytes(self) -> Optional[int]:
        measured = [c.peak_rss_bytes for c in self.components if c.peak_rss_bytes is not None]
        return max(measured) if measured else None

    def slowest(self) -> Optional[ComponentTiming]:
        return max(self.components, key=lambda c: c.wall_seconds, default=None)

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
            totals.append(f"{_duration(self.cpu_seconds)} CPU on {self.cpu_count} cores")
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


class ComponentMonitor(logging.Filter):
    """Measures each component LocalDagRunner runs in this process; lets every log record through.

    Use as a context manager around LocalDagRunner().run(...); `timing` then holds the components in the order
    they finished (a component that raised is measured up to the failure and marked "failed"). The runner's lines
    are INFO records: while the monitor is on, absl's verbosity is INFO even when it was less, and the monitor
    drops the records below the level that was in force, so what reaches the console does not change. The
    verbosity is set through absl (its flag), not the logger's level: TensorFlow's object tracking sets absl's
    verbosity to FATAL and back to the flag's value around every SavedModel traversal.
    """

    def __init__(self, sample_seconds: float = SAMPLE_SECONDS):
        super().__init__()
        self._process = psutil.Process()
        self._sample_seconds = sample_seconds
        self._lock = threading.Lock()
        self._current: Optional[ComponentTiming] = None
        self._started_wall = self._started_cpu = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="hubtfx-component-monitor", daemon=True)
        self._run_started = 0.0
        self._logger = logging.getLogger("absl")
        self._saved_verbosity = absl_logging.get_verbosity()
        self._shown_level = logging.NOTSET
        self.timing = RunTiming()

    def __enter__(self) -> "ComponentMonitor":
        self._run_started = time.perf_counter()
        self._saved_verbosity, self._shown_level = absl_logging.get_verbosity(), self._logger.getEffectiveLevel()
        if self._shown_level > logging.INFO:
            absl_logging.set_verbosity(absl_logging.INFO)
        self._logger.addFilter(self)
        self._sampler.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._logger.removeFilter(self)
        if self._shown_level > logging.INFO:
            absl_logging.set_verbosity(self._saved_verbosity)
        with self._lock:
            if self._current is not None:  # the component raised: no "finished" line came
                self._finish_current("failed")
        self._stop.set()
        self._sampler.join()
        self.timing.wall_seconds = time.perf_counter() - self._run_started

    def filter(self, record: logging.LogRecord) -> bool:
        match = COMPONENT_LINE.search(record.getMessage())
        if match:
            with self._lock:
                if match.group(2) == "running":
                    self._start(match.group(1))
                elif self._current is not None and self._current.component == match.group(1):
                    self._finish_current("ran")
        return record.levelno >= self._shown_level

    def _cpu(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system + times.children_user + times.children_system

    def _start(self, component: str) -> None:
        if self._current is not None:
            self._finish_current("ran")
        self._current = ComponentTiming(component, peak_rss_bytes=self._process.memory_info().rss)
        self._started_wall, self._started_cpu = time.perf_counter(), self._cpu()

    def _finish_current(self, status: str) -> None:
        current = self._current
        current.wall_seconds = time.perf_counter() - self._started_wall
        current.cpu_seconds = self._cpu() - self._started_cpu
        current.peak_rss_bytes = max(current.peak_rss_bytes, self._process.memory_info().rss)
        current.status = status
        self.timing.components.append(current)
        self._current = None

    def _sample(self) -> None:
        while not self._stop.wait(self._sample_seconds):
            rss = self._process.memory_info().rss
            with self._lock:
                if self._current is not None:
                    self._current.peak_rss_bytes = max(self._current.peak_rss_bytes, rss)


def from_metadata(store, pipeline_name: str) -> RunTiming:
    """The latest run of `pipeline_name` as ML Metadata recorded it: each node's execution state and wall time
    (registration to publication), in execution order. Empty when the pipeline has no execution."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return RunTiming(source="metadata")
    executions = store.get_executions_by_context(pipeline.id)
    if not executions:
        return RunTiming(source="metadata")
    run_type = store.get_context_type("pipeline_run")
    node_type = store.get_context_type("node")
    latest_run = max((c for c in store.get_contexts_by_execution(max(executions, key=lambda e: e.id).id)
                      if c.type_id == run_type.id), key=lambda c: c.id, default=None)
    if latest_run is None:
        return RunTiming(source="metadata")
    components = []
    for execution in sorted(store.get_executions_by_context(latest_run.id), key=lambda e: e.id):
        nodes = [c.name for c in store.get_contexts_by_execution(execution.id) if c.type_id == node_type.id]
        name = nodes[0].split(".", 1)[-1] if nodes else f"execution {execution.id}"
        components.append(ComponentTiming(
            name, _STATUS.get(execution.last_known_state, "unknown"),
            max(execution.last_update_time_since_epoch - execution.create_time_since_epoch, 0) / 1000.0))
    first = min(e.create_time_since_epoch for e in store.get_executions_by_context(latest_run.id))
    last = max(e.last_update_time_since_epoch for e in store.get_executions_by_context(latest_run.id))
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
    return RunTiming(components, measured.wall_seconds or recorded.wall_seconds, measured.cpu_count,
                     measured.source if measured.components else recorded.source)


def write_json(timing: RunTiming, folder: str, stem: str) -> str:
    """Writes <folder>/<stem>.timing.json and a copy as latest.timing.json; returns the first path."""
    os.makedirs(folder, exist_ok=True)
    text = json.dumps(timing.to_json(), indent=2)
    path = os.path.join(folder, stem + TIMING_FILE_SUFFIX)
    for target in (path, os.path.join(folder, LATEST_TIMING)):
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    return path
