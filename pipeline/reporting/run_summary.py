"""What a run did, read back from ML Metadata and the artifacts: for the CLI's closing summary and for tests."""
import dataclasses
import json
import os
from typing import Dict, List, Optional

import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from hubtfx.components.common import artifact_files
from hubtfx.components.evaluator import comparability
from hubtfx.components.gate import coverage as coverage_lib
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.hub_modules import builder
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule, require
from hubtfx.pipeline.reporting import timing as timing_lib


@dataclasses.dataclass
class RunSummary:
    data_root: str = ""
    files_seen: int = 0
    input_unit: str = "files"  # what files_seen counts: "rows" for a table of texts
    examples_written: int = 0
    skipped: List[Dict[str, str]] = dataclasses.field(default_factory=list)
    # Training and eval examples per class, in class-id order (see components/gate/coverage.py).
    classes: List[coverage_lib.ClassCoverage] = dataclasses.field(default_factory=list)
    # Images the split moved so that no class lands wholly in one split (components/example_gen/split.py).
    rebalanced: List[Dict[str, str]] = dataclasses.field(default_factory=list)
    module: str = ""
    module_sha256: str = ""
    # What each training stage chose and did, and which was kept (training_history.json, see components.trainer).
    stage_outcomes: Dict[str, str] = dataclasses.field(default_factory=dict)
    chosen_stage: str = ""
    eval_accuracy: Optional[float] = None
    blessed: bool = False
    pushed: bool = False
    pushed_path: str = ""
    accuracy_threshold: float = 0.0
    # Why the Evaluator did not compare with the latest blessed model it was given ("" if it did, or had none).
    baseline_skipped_reason: str = ""
    # Set when a blessed model was not pushed because the served latest version is the same model.
    push_skipped_reason: str = ""
    report_path: str = ""  # the HTML run report, when it could be written
    # Where the time went, per component (pipeline/reporting/timing.py); timing_path: its JSON.
    timing: timing_lib.RunTiming = dataclasses.field(default_factory=timing_lib.RunTiming)
    timing_path: str = ""

    def serving_outcome(self) -> str:
        if self.pushed:
            return f"pushed to {self.pushed_path}"
        if self.push_skipped_reason:
            return f"not pushed again: {self.push_skipped_reason}"
        return "nothing pushed"

    def coverage_warnings(self) -> List[str]:
        return coverage_lib.warnings(self.classes)

    def _class_lines(self) -> List[str]:
        if not self.classes:
            return []

        def count(value):
            return "?" if value is None else str(value)

        lines = ["  classes     train/eval examples: "
                 + ", ".join(f"{c.name} {count(c.train)}/{count(c.eval)}" for c in self.classes)]
        if self.rebalanced:
            moves = ", ".join(f"{m.get('file')} -> {m.get('split')}" for m in self.rebalanced[:10])
            more = f" and {len(self.rebalanced) - 10} more" if len(self.rebalanced) > 10 else ""
            lines.append(f"                moved so that each class is in both splits: {moves}{more}")
        lines += [f"  WARNING     {warning}" for warning in self.coverage_warnings()]
        return lines

    def render(self) -> str:
        lines = ["", "hubtfx run summary",
                 f"  data        {self.data_root}: {self.files_seen} {self.input_unit}, {self.examples_written} used, "
                 f"{len(self.skipped)} skipped"]
        lines += [f"                skipped {s.get('file')}: {s.get('reason')}" for s in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"                ... and {len(self.skipped) - 20} more (see the ingestion report)")
        lines += self._class_lines()
        lines.append(f"  module      {self.module} (sha256 {self.module_sha256[:12]})")
        for name, outcome in self.stage_outcomes.items():
            lines.append(f"  training    {name}: {outcome}")
        if self.chosen_stage:
            lines.append(f"              kept {self.chosen_stage} (chosen on the train split only)")
        if self.eval_accuracy is not None:
            verdict = "BLESSED" if self.blessed else "NOT blessed"
            lines.append(f"  evaluation  accuracy {self.eval_accuracy:.3f} (threshold {self.accuracy_threshold:.2f}, "
                         f"on the whole eval split, not per class): {verdict}")
        if self.baseline_skipped_reason:
            lines.append(f"  baseline    {self.baseline_skipped_reason}: {comparability.CONSEQUENCE}")
        lines.append(f"  serving     {self.serving_outcome()}")
        lines += self.timing.render()
        if self.report_path:
            lines.append(f"  report      {self.report_path}")
        if self.timing_path:
            lines.append(f"  timing      {self.timing_path}")
        return "\n".join(lines)


def latest_artifacts(store, pipeline_name: str) -> Dict[str, object]:
    """The newest artifact of each type in the pipeline's context (the current run's, once it has finished)."""
    context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if context is None:
        return {}
    types = {t.id: t.name for t in store.get_artifact_types()}
    latest = {}
    for artifact in sorted(store.get_artifacts_by_context(context.id), key=lambda a: a.id):
        latest[types[artifact.type_id]] = artifact
    return latest


def artifact_type_id(store, name: str) -> Optional[int]:
    artifact_type = store.get_artifact_type(name)
    return artifact_type.id if artifact_type else None


def training_examples(store, model_run) -> list:
    """The Examples artifacts the Trainer read for this model (several spans when it trains on a span window)."""
    output = metadata_store_pb2.Event.OUTPUT
    producers = [e.execution_id for e in store.get_events_by_artifact_ids([model_run.id]) if e.type == output]
    if not producers:
        return []
    # The first producer trained the model; later ones are cache hits that reused it.
    events = store.get_events_by_execution_ids([min(producers)])
    input_ids = [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.INPUT]
    examples_type = artifact_type_id(store, "Examples")
    return [a for a in store.get_artifacts_by_id(input_ids) if a.type_id == examples_type]


def trained_examples(store, latest: Dict[str, object]) -> list:
    """The Examples of the latest model's training, or the latest Examples when no model was trained."""
    examples = training_examples(store, latest["ModelRun"]) if "ModelRun" in latest else []
    if not examples and "Examples" in latest:
        examples = [latest["Examples"]]
    return examples


def read_json(path: str) -> dict:
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def custom_property(artifact, key, default=None):
    value = artifact.custom_properties.get(key) if artifact is not None else None
    if value is None:
        return default
    return value.string_value or value.int_value or value.double_value


def overall_accuracy(evaluation_uri: str) -> Optional[float]:
    # TFMA takes seconds to import.
    from hubtfx.pipeline.reporting import eval_results  # pylint: disable=import-outside-toplevel
    return eval_results.overall_metrics(evaluation_uri)[0].get(eval_results.ACCURACY)


def summarize(config: PipelineConfig, module: ResolvedModule, connection_config) -> RunSummary:
    """What the latest run of `config`'s pipeline did, read from ML Metadata; `module` is the ResolvedModule the
    run used (its sha256 is shown)."""
    module = require(module, "run_summary.summarize")
    store = metadata_store.MetadataStore(connection_config)
    latest = latest_artifacts(store, config.pipeline_name)
    summary = RunSummary(data_root=config.resolved_data_root, module=config.hub_handle or builder.bundled(module.modality).description,
                         module_sha256=module.sha256, accuracy_threshold=config.accuracy_threshold,
                         timing=timing_lib.from_metadata(store, config.pipeline_name))
    if "Examples" in latest:
        report = read_json(os.path.join(latest["Examples"].uri, artifact_files.INGESTION_REPORT_FILE))
        summary.files_seen = report.get("files_seen", 0)
        summary.input_unit = "rows" if report.get("table") else "files"
        summary.examples_written = report.get("examples_written", 0)
        summary.skipped = report.get("skipped", [])
        training = [coverage_lib.read_ingestion(e.uri) for e in trained_examples(store, latest)]
        summary.classes = coverage_lib.class_coverage(training, coverage_lib.read_ingestion(latest["Examples"].uri))
        summary.rebalanced = sorted({(m["file"], m["split"]): m for r in training for m in r.get("rebalanced", [])}
                                    .values(), key=lambda m: m["file"])
    if "ModelRun" in latest:
        history = read_json(os.path.join(latest["ModelRun"].uri, artifact_files.TRAINING_HISTORY_FILE))
        summary.stage_outcomes = {k: v.get("outcome", "") for k, v in history.get("stages", {}).items()}
        summary.chosen_stage = history.get("chosen_stage", "")
    if "ModelEvaluation" in latest:
        summary.eval_accuracy = overall_accuracy(latest["ModelEvaluation"].uri)
    summary.blessed = bool(custom_property(latest.get("ModelBlessing"), "blessed", 0))
    summary.baseline_skipped_reason = custom_property(latest.get("ModelBlessing"),
                                                      comparability.BASELINE_SKIPPED_REASON, "")
    pushed = latest.get("PushedModel")
    summary.pushed = bool(custom_property(pushed, "pushed", 0))
    summary.pushed_path = custom_property(pushed, "pushed_destination", "") if summary.pushed else ""
    summary.push_skipped_reason = custom_property(pushed, "push_skipped_reason", "") if summary.blessed else ""
    return summary
