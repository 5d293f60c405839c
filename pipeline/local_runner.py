"""Runs `create_pipeline(config)` locally: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata."""
import logging
import os

from tfx import v1 as tfx

from pipeline import run_summary
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

# In-process Beam: no worker subprocesses to configure, and small local data does not need them.
LOCAL_BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def metadata_connection_config(config: PipelineConfig):
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(config.resolved_metadata_path)


def run_local(config: PipelineConfig) -> run_summary.RunSummary:
    """Runs the whole pipeline for a resolved config (see pipeline.module_resolution) and reports what happened."""
    os.makedirs(config.output_dir, exist_ok=True)
    logging.info("Running pipeline %r: data %s, output %s", config.pipeline_name, config.resolved_data_root,
                 config.output_dir)
    tfx.orchestration.LocalDagRunner().run(
        create_pipeline(config, metadata_connection_config(config), LOCAL_BEAM_ARGS))
    return run_summary.summarize(config, metadata_connection_config(config))
