"""Runs `create_pipeline(config, module)` locally: LocalDagRunner, Beam's FnApiRunner, SQLite ML Metadata."""
import contextlib
import datetime
import logging
import re
import sys
from typing import List

from apache_beam import version as beam_version
from tqdm.contrib.logging import logging_redirect_tqdm
from tfx import v1 as tfx

from hubtfx.components.trainer import progress
from hubtfx.pipeline import output_folder
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule, require
from hubtfx.pipeline.pipeline import create_pipeline
from hubtfx.pipeline.reporting import report, run_summary, timing

RUN_LOCK_FILE = ".hubtfx.lock"

# In-process Beam by default (config.beam_workers 1): no worker processes to start, each of which would import
# TensorFlow again (measured: README "Scale"). The runner is named: Beam 2.74's DirectRunner first downloads the
# Prism runner from github.com for every Beam step (then, on this offline machine, falls back to the FnApiRunner
# after the failed DNS lookup; a silently dropped connection would hang it). The FnApiRunner is what that fallback
# runs, without the download.
# The SDK container image is named, never pulled: TFX's Beam executors otherwise copy the whole TFX installation
# and build an sdist of it for remote workers (tfx.utils.dependency_utils.make_beam_dependency_flags), in every
# Beam component of every run: ~1.5 s and a 42 MB temporary folder that is never deleted, each time. Local workers
# import the installed TFX; only a Docker environment would read the image name.
_SDK_IMAGE = (f"--sdk_container_image=apache/beam_python{sys.version_info.major}.{sys.version_info.minor}_sdk:"
              f"{beam_version.__version__}")
LOCAL_BEAM_ARGS = ["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1", _SDK_IMAGE]


def local_beam_args(workers: int) -> List[str]:
    """The local runs' Beam arguments: in process for 1 worker, else `workers` worker processes (FnApiRunner's
    multi_processing mode, which talks to them over loopback gRPC)."""
    if workers <= 1:
        return list(LOCAL_BEAM_ARGS)
    return ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}",
            _SDK_IMAGE]


def metadata_connection_config(config: PipelineConfig):
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(config.resolved_metadata_path)


def run_local(config: PipelineConfig, module: ResolvedModule) -> run_summary.RunSummary:
    """Runs the whole pipeline for `config` with the backbone `module` (the ResolvedModule of
    hub_modules.module_resolution.resolve(config)) and reports what happened.

    Raises TypeError at once if `module` is not a ResolvedModule.

    Raises output_folder.OutputFolderError at once if the output folder cannot be written or another run uses it:
    two runs on one folder would interleave their writes to ML Metadata and the serving folder.
    """
    module = require(module, "run_local")
    output_folder.check_writable(config.output_dir)
    with output_folder.exclusive_lock(config.output_dir, RUN_LOCK_FILE) as locked:
        if not locked:
            pid = output_folder.holder_pid(config.output_dir, RUN_LOCK_FILE)
            raise output_folder.OutputFolderError(
                f"another hubtfx run is using {config.output_dir} (pid {pid or 'unknown'}); wait for it to finish "
                "or use another --output.")
        return _run_pipeline(config, module)


def _run_pipeline(config: PipelineConfig, module: ResolvedModule) -> run_summary.RunSummary:
    logging.info("Running pipeline %r: data %s, output %s", config.pipeline_name, config.resolved_data_root,
                 config.output_dir)
    pipeline = create_pipeline(config, module, metadata_connection_config(config),
                               local_beam_args(config.beam_workers))
    with component_progress(len(pipeline.components)), timing.ComponentMonitor() as monitor:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    summary = run_summary.summarize(config, module, metadata_connection_config(config))
    summary.timing = timing.combine(monitor.timing, summary.timing)
    generated = datetime.datetime.now()
    summary.timing_path = write_timing_or_warn(summary.timing, config, generated)
    summary.report_path = write_report_or_warn(config, module, summary.timing, generated)
    return summary


# LocalDagRunner (tfx/orchestration/local/local_dag_runner.py, TFX 1.16) logs these through absl around each node.
_COMPONENT_LINE = re.compile(r"Component (\S+) is (running|finished)\.")


class _ComponentBar(logging.Filter):
    """Moves a bar over the pipeline's components on LocalDagRunner's log lines; lets every record through."""

    def __init__(self, bar):
        super().__init__()
        self._bar = bar

    def filter(self, record: logging.LogRecord) -> bool:
        match = _COMPONENT_LINE.search(record.getMessage())
        if match and match.group(2) == "running":
            self._bar.set_postfix_str(match.group(1))
        elif match:
            self._bar.update(1)
        return True


@contextlib.contextmanager
def component_progress(total: int):
    """On a terminal (progress.bars_wanted), a bar over the `total` components for the duration; log lines are
    written above it. Elsewhere nothing changes: the component log lines are the progress."""
    bar = progress.bar(total, "[pipeline]", "component")
    if bar.disable:
        yield
        return
    watcher = _ComponentBar(bar)
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(watcher)
    try:
        with logging_redirect_tqdm():
            yield
    finally:
        absl_logger.removeFilter(watcher)
        bar.close()


def write_timing_or_warn(run_timing: timing.RunTiming, config: PipelineConfig, generated: datetime.datetime) -> str:
    """The timing JSON's path, or "" when it could not be written: the run's result must still be shown."""
    try:
        return timing.write_json(run_timing, report.reports_folder(config), report.run_stem(generated))
    except OSError as e:
        logging.warning("Could not write the run's timing JSON (the run itself is unaffected): %s", e)
        return ""


def write_report_or_warn(config: PipelineConfig, module: ResolvedModule, run_timing: timing.RunTiming,
                         generated: datetime.datetime) -> str:
    """The HTML run report's path, or "" when it could not be written: the run's result must still be shown."""
    try:
        return report.write_report(config, module, metadata_connection_config(config), run_timing, generated)
    except Exception:  # pylint: disable=broad-except
        logging.warning("Could not write the HTML run report (the run itself is unaffected; its summary follows). "
                        "Please report this traceback:", exc_info=True)
        return ""
