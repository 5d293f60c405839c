"""`hubtfx retrain`: one scheduled retraining step, meant for cron or a CI schedule.

If the data root has a span newer than the last one processed, the whole pipeline runs on it (ExampleGen
ingests the newest span; Transform and the Trainer see the last `span_window` spans); otherwise nothing runs.
The outcome is recorded in <output_dir>/retrain_state.json once the pipeline reached a verdict on the span
(pushed, not blessed, or data rejected), so a rejected span is reported once, not on every tick; an unexpected
failure records nothing and the next tick tries again. Spans are immutable: publish corrected data as a new span.
"""
import dataclasses
import enum
import json
import os
import time
from typing import Callable, Optional

from hubtfx.components.example_gen import layout
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.output_folder import exclusive_lock

STATE_FILE = "retrain_state.json"
LOCK_FILE = ".retrain.lock"


class Outcome(enum.Enum):
    NOTHING_NEW = "nothing new"
    BUSY = "another retrain is running"
    ALREADY_SERVING = "blessed, identical to the served model"
    NOT_BLESSED = "trained but not blessed"
    PUSHED = "pushed"
    DATA_REJECTED = "stopped before training: bad data"


@dataclasses.dataclass(frozen=True)
class Result:
    outcome: Outcome
    message: str
    summary: Optional[object] = None  # the RunSummary when the pipeline ran to the end


def state_path(config: PipelineConfig) -> str:
    return os.path.join(config.output_dir, STATE_FILE)


def read_state(config: PipelineConfig) -> dict:
    try:
        with open(state_path(config), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def write_state(config: PipelineConfig, span: int, outcome: Outcome, detail: str = "") -> None:
    """Atomically, so that a killed retrain never leaves a state file that cannot be read."""
    payload = {"last_span": span, "outcome": outcome.value, "detail": detail, "finished_at": time.time()}
    temp = state_path(config) + ".tmp"
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    os.replace(temp, state_path(config))


def newest_span(config: PipelineConfig) -> int:
    """The span ExampleGen will ingest: the highest span-<N> folder, by the same listing its driver uses."""
    span, _ = layout.resolve_span(config.resolved_data_root)
    return span


def outcome_of(summary) -> Outcome:
    if summary.pushed:
        return Outcome.PUSHED
    return Outcome.ALREADY_SERVING if summary.push_skipped_reason else Outcome.NOT_BLESSED


def retrain(config: PipelineConfig, run: Callable, resolve: Callable) -> Result:
    """Runs the pipeline on a new span if there is one.

    Args:
      config: the validated config (use_spans is implied).
      run: run(config, module) runs the pipeline for the config and its ResolvedModule and returns its RunSummary
        (pipeline.local_runner.run_local).
      resolve: resolve(config) returns the backbone's ResolvedModule (hub_modules.module_resolution.resolve); only
        called when there is something to train, so an idle tick stays cheap.

    Raises whatever `run` raises; data errors (DataAnomaliesError, DataLayoutError) are recorded as the span's
    outcome first.
    """
    from hubtfx.components.gate.anomalies import DataAnomaliesError  # pylint: disable=import-outside-toplevel
    config = dataclasses.replace(config, use_spans=True)
    with exclusive_lock(config.output_dir, LOCK_FILE) as locked:
        if not locked:
            return Result(Outcome.BUSY, f"another `hubtfx retrain` holds {config.output_dir}; nothing done.")
        span = newest_span(config)
        state = read_state(config)
        if state.get("last_span", 0) >= span:
            return Result(Outcome.NOTHING_NEW, f"nothing new: span {span} is the newest and was already processed "
                                               f"({state.get('outcome')}).")
        try:
            summary = run(config, resolve(config))
        except (DataAnomaliesError, layout.DataLayoutError) as e:
            write_state(config, span, Outcome.DATA_REJECTED, str(e).splitlines()[0])
            raise
        outcome = outcome_of(summary)
        write_state(config, span, outcome, summary.serving_outcome())
        return Result(outcome, f"span {span}: {outcome.value}; serving: {summary.serving_outcome()}", summary)
