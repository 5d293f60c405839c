"""Runs `create_pipeline(config)` locally: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata."""
import logging

from tfx import v1 as tfx

from hubtfx.pipeline import output_folder
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.pipeline import create_pipeline
from hubtfx.pipeline.reporting import report, run_summary

RUN_LOCK_FILE = ".hubtfx.lock"

# In-process Beam: no worker subprocesses to configure, and small local data does not need them.
LOCAL_BEAM_ARGS = ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]


def metadata_connection_config(config: PipelineConfig):
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(config.resolved_metadata_path)


def run_local(config: PipelineConfig) -> run_summary.RunSummary:
    """Runs the whole pipeline for a resolved config (see hub_modules.module_resolution) and reports what happened.

    Raises output_folder.OutputFolderError at once if the output folder cannot be written or another run uses it:
    two runs on one folder would interleave their writes to ML Metadata and the serving folder.
    """
    output_folder.check_writable(config.output_dir)
    with output_folder.exclusive_lock(config.output_dir, RUN_LOCK_FILE) as locked:
        if not locked:
            pid = output_folder.holder_pid(config.output_dir, RUN_LOCK_FILE)
            raise output_folder.OutputFolderError(
                f"another hubtfx run is using {config.output_dir} (pid {pid or 'unknown'}); wait for it to finish "
                "or use another --output.")
        return _run_pipeline(config)


def _run_pipeline(config: PipelineConfig) -> run_summary.RunSummary:
    logging.info("Running pipeline %r: data %s, output %s", config.pipeline_name, config.resolved_data_root,
                 config.output_dir)
    tfx.orchestration.LocalDagRunner().run(
        create_pipeline(config, metadata_connection_config(config), LOCAL_BEAM_ARGS))
    summary = run_summary.summarize(config, metadata_connection_config(config))
    summary.report_path = write_report_or_warn(config)
    return summary


def write_report_or_warn(config: PipelineConfig) -> str:
    """The HTML run report's path, or "" when it could not be written: the run's result must still be shown."""
    try:
        return report.write_report(config, metadata_connection_config(config))
    except Exception:  # pylint: disable=broad-except
        logging.warning("Could not write the HTML run report (the run itself is unaffected; its summary follows). "
                        "Please report this traceback:", exc_info=True)
        return ""
