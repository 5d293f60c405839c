"""`write_report`: one self-contained HTML page about the latest run, for a browser or an e-mail attachment.

Everything is read back from ML Metadata and the run's artifacts (like `run_summary` beside it); plots are
embedded as PNG data URIs and examples are rendered by the model's modality (image thumbnails are PNG data URIs
too), so the file needs nothing else, not even JavaScript. The markup is the Jinja2 template report.html.j2 beside
this module, autoescaped, so every name from the data is shown as text.
"""
import base64
import dataclasses
import datetime
import functools
import glob
import io
import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence

import jinja2
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from ml_metadata.metadata_store import metadata_store
from tfx.utils import path_utils

from hubtfx.components.common import artifact_files, feature_keys
from hubtfx.components.trainer import exported_model
from hubtfx.components.evaluator import comparability
from hubtfx.components.modality import registry as modalities
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule
from hubtfx.pipeline.reporting import eval_results, run_summary, timing

REPORTS_DIR = "reports"
LATEST_REPORT = "latest.html"
# In REPORTS_DIR: the misclassified examples last found, with the (examples, model) they were found for. Artifacts
# never change once written, so a run that evaluated nothing new (a scheduled re-run without new data) reuses them
# instead of loading the model and scoring MAX_SCORED examples again (about 45 s of a 47 s steady-state re-run at
# 1,500 images: benchmarks/pipeline_overhead.py).
MISCLASSIFIED_CACHE = ".misclassified.json"
_MISCLASSIFIED_CACHE_VERSION = 1  # raise when Misclassified, its rendering or the scoring changes
MAX_THUMBNAILS = 8
# The report scores at most this many eval examples to find misclassified ones: TFMA keeps no per-example
# predictions, so this is a second pass over the eval split with the exported model, and unbounded it grew with
# the split (about 2 minutes for 1,943 eval images of a 9,716-image run, where 8 errors were hard to find).
MAX_SCORED = 512
_SCORING_BATCH = 32
# Besides the modality's raw feature.
_EVAL_FEATURES = {name: tf.io.FixedLenFeature([], dtype) for name, dtype in
                  [(feature_keys.LABEL_KEY, tf.int64), (feature_keys.LABEL_NAME_KEY, tf.string),
                   (feature_keys.FILENAME_KEY, tf.string)]}


@dataclasses.dataclass
class Misclassified:
    filename: str
    label_name: str
    predicted_name: str
    probability: float
    example_html: str  # the example as the model's modality renders it (Modality.render_example), HTML-safe


@dataclasses.dataclass
class RunFacts:
    """What the report shows, gathered before any HTML is written."""
    config: PipelineConfig
    summary: run_summary.RunSummary
    ingestion: List[dict]  # ingestion reports of the Examples the model was trained on, by span
    history: dict
    class_names: List[str]
    evaluation: Optional[eval_results.EvalResults]
    baseline_model: str
    skipped_baseline_model: str  # the latest blessed model the Evaluator could not compare with, if any
    module_handle: str
    module_sha256: str
    module_uri: str
    misclassified: List[Misclassified]


# ------------------------------------------------------------------------------------------- reading the run
def imported_module(store, pipeline_name: str):
    """The newest Hub module imported by the pipeline: the Model artifact that carries a sha256."""
    context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    model_type = run_summary.artifact_type_id(store, "Model")
    if context is None or model_type is None:
        return None
    modules = [a for a in store.get_artifacts_by_context(context.id)
               if a.type_id == model_type and "sha256" in a.custom_properties]
    return max(modules, key=lambda a: a.id, default=None)


def _ingestion_reports(store, latest: Dict[str, object]) -> List[dict]:
    reports = [run_summary.read_json(os.path.join(e.uri, artifact_files.INGESTION_REPORT_FILE))
               for e in run_summary.trained_examples(store, latest)]
    return sorted((r for r in reports if r), key=lambda r: r.get("span") or 0)


def _eval_batches(examples_uri: str, raw_feature: str):
    """Batches of the eval split: (serialized tf.Examples [b] string, {raw_feature, label, label name, filename})."""
    files = sorted(tf.io.gfile.glob(os.path.join(glob.escape(examples_uri), "Split-eval", "*")))
    if not files:
        raise FileNotFoundError(f"No eval split under {examples_uri}: expected Split-eval/*.gz from ExampleGen.")
    features = {raw_feature: tf.io.FixedLenFeature([], tf.string), **_EVAL_FEATURES}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(_SCORING_BATCH)
    return dataset.map(lambda batch: (batch, tf.io.parse_example(batch, features)))


def _scoring_batches(max_scored: int) -> int:
    """Whole scoring batches that cover max_scored examples."""
    return -(-max_scored // _SCORING_BATCH)


def misclassified_examples(examples_uri: str, model_uri: str, limit: int = MAX_THUMBNAILS,
                           max_scored: int = MAX_SCORED) -> List[Misclassified]:
    """The first `limit` eval examples the model gets wrong among the first `max_scored` (about, rounded up to
    whole batches), rendered by the model's modality.

    They are scored through the model's tf.Example signature, as the Evaluator scores them: the same prediction
    function as the raw-input signature, without its per-request input screening (a fixed cost per call, see
    image_ops.image_errors), which ExampleGen's vetting has made redundant for these examples."""
    loaded = modalities.load_model(path_utils.serving_model_path(model_uri))
    modality = modalities.modality_for_model(loaded)
    signature = loaded.signatures[exported_model.EXAMPLES_SIGNATURE]
    found = []
    for serialized, batch in _eval_batches(examples_uri, modality.raw_feature).take(_scoring_batches(max_scored)):
        batch = {k: v.numpy() for k, v in batch.items()}
        raw = batch[modality.raw_feature]
        outputs = {k: v.numpy() for k, v in signature(**{exported_model.EXAMPLES_INPUT: serialized}).items()}
        predicted = outputs[exported_model.CLASS_ID]
        for i in np.flatnonzero(predicted != batch[feature_keys.LABEL_KEY]):
            filename = batch[feature_keys.FILENAME_KEY][i].decode("utf-8", "replace")
            found.append(Misclassified(
                filename=filename,
                label_name=batch[feature_keys.LABEL_NAME_KEY][i].decode("utf-8", "replace"),
                predicted_name=outputs[exported_model.CLASS_NAME][i].decode("utf-8", "replace"),
                probability=float(outputs[exported_model.PROBABILITIES][i, predicted[i]]),
                example_html=modality.render_example(raw[i], f"Misclassified: {filename}")))
            if len(found) == limit:
                return found
    return found


def _misclassified_cache_key(examples_uri: str, model_uri: str) -> dict:
    """What the misclassified examples depend on. The artifacts' URIs end in ML Metadata execution ids, which start
    over if the metadata database is deleted while the pipeline root stays: the files' sizes and modification times
    tell a re-created artifact at a reused URI apart."""
    watched = [os.path.join(path_utils.serving_model_path(model_uri), "saved_model.pb"),
               *sorted(tf.io.gfile.glob(os.path.join(glob.escape(examples_uri), "Split-eval", "*")))]
    stats = []
    for path in watched:
        try:
            stat = os.stat(path)
            stats.append([path, stat.st_size, stat.st_mtime_ns])
        except OSError:
            stats.append([path, None, None])
    return {"version": _MISCLASSIFIED_CACHE_VERSION, "examples": examples_uri, "model": model_uri,
            "limit": MAX_THUMBNAILS, "max_scored": MAX_SCORED, "batch": _SCORING_BATCH, "files": stats}


def cached_misclassified_examples(cache_dir: str, examples_uri: str, model_uri: str) -> List[Misclassified]:
    """misclassified_examples(examples_uri, model_uri), reused from the local folder `cache_dir`'s
    MISCLASSIFIED_CACHE when it was found for the same artifacts, files and bounds. An unreadable cache is
    recomputed; one that cannot be written is only logged (the report still gets its examples)."""
    key = _misclassified_cache_key(examples_uri, model_uri)
    path = os.path.join(cache_dir, MISCLASSIFIED_CACHE)
    try:
        with open(path, encoding="utf-8") as f:
            cached = json.load(f)
        if cached.get("key") == key:
            return [Misclassified(**found) for found in cached["found"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    found = misclassified_examples(examples_uri, model_uri)
    partial = None
    try:
        os.makedirs(cache_dir, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=MISCLASSIFIED_CACHE, dir=cache_dir)
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            json.dump({"key": key, "found": [dataclasses.asdict(m) for m in found]}, f)
        os.replace(partial, path)  # atomic: a concurrent reader sees the old cache or the new one
    except OSError as err:
        logging.warning("Could not cache the report's misclassified examples in %s (%s); the next report will "
                        "score them again.", cache_dir, err)
        if partial is not None and os.path.exists(partial):
            os.remove(partial)
    return found


def collect(config: PipelineConfig, module: ResolvedModule, connection_config) -> RunFacts:
    """The facts of the latest run of `config`'s pipeline, which used the backbone `module`."""
    store = metadata_store.MetadataStore(connection_config)
    latest = run_summary.latest_artifacts(store, config.pipeline_name)
    history = run_summary.read_json(os.path.join(latest["ModelRun"].uri, artifact_files.TRAINING_HISTORY_FILE)) \
        if "ModelRun" in latest else {}
    class_names = history.get("class_names", [])  # the model's class ids, which the evaluation uses
    blessing = latest.get("ModelBlessing")
    evaluated_model = run_summary.custom_property(blessing, "current_model", "")
    imported = imported_module(store, config.pipeline_name)  # its ML Metadata artifact
    return RunFacts(
        config=config,
        summary=run_summary.summarize(config, module, connection_config),
        ingestion=_ingestion_reports(store, latest),
        history=history,
        class_names=class_names,
        evaluation=eval_results.load(latest["ModelEvaluation"].uri, class_names)
        if "ModelEvaluation" in latest else None,
        baseline_model=run_summary.custom_property(blessing, "baseline_model", ""),
        skipped_baseline_model=run_summary.custom_property(blessing, comparability.SKIPPED_BASELINE_MODEL, ""),
        module_handle=run_summary.custom_property(imported, "hub_handle", ""),
        module_sha256=run_summary.custom_property(imported, "sha256", ""),
        module_uri=imported.uri if imported else "",
        # The Evaluator scored the latest Examples' eval split; the thumbnails come from the same split.
        misclassified=cached_misclassified_examples(reports_folder(config), latest["Examples"].uri, evaluated_model)
        if evaluated_model else [],
    )


# ------------------------------------------------------------------------------------------------- figures
def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _plain(text: str) -> str:
    """Matplotlib would read text between dollar signs as math."""
    return text.replace("$", r"\$")


def stage_curves_png(stage: str, history: Dict[str, List[float]]) -> bytes:
    figure = Figure(figsize=(8, 3))
    # Cross-entropy, not Keras' loss: the loss also holds the head's L2 penalty.
    for axis, metric in zip(figure.subplots(1, 2), [artifact_files.HISTORY_CROSS_ENTROPY, "accuracy"]):
        # The validation curve is the slice held out of the train split, never the eval split.
        for key, label in [(metric, "fitting slice (augmented)"), ("val_" + metric, "validation slice")]:
            values = history.get(key, [])
            axis.plot(range(1, len(values) + 1), values, marker="o", label=label)
        axis.set_title(f"{stage}: {metric}")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    return _png(figure)


def confusion_matrix_png(matrix: np.ndarray, class_names: Sequence[str]) -> bytes:
    size = max(4.0, 0.6 * len(class_names) + 2)
    figure = Figure(figsize=(size, size))
    axis = figure.subplots()
    axis.imshow(matrix, cmap="Blues")
    labels = [_plain(name) for name in class_names]
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("actual class")
    dark = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", color="white" if count > dark else "black")
    return _png(figure)


# ---------------------------------------------------------------------------------------------------- HTML
# The markup is in report.html.j2, one macro per section; the functions below choose what each section shows.
TEMPLATE = "report.html.j2"


@functools.lru_cache(maxsize=None)
def _macros():
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "."), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)
    environment.filters["base64"] = lambda data: base64.b64encode(data).decode("ascii")
    return environment.get_template(TEMPLATE).module


def _number(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _significant(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _metric(name: str, value: Optional[float]) -> str:
    return str(round(value)) if name == "example_count" and value is not None else _number(value, 4)


def _count(value: Optional[int]) -> str:
    return "not recorded" if value is None else str(value)


def coverage_warnings(facts: RunFacts) -> str:
    """A prominent box naming every class that was trained but never evaluated ("" when there is none)."""
    return _macros().coverage_warnings(facts.summary.coverage_warnings())


@dataclasses.dataclass
class _Span:
    span: Optional[int]
    splits: str
    rows: List[tuple]
    moved: List[dict]


def data_section(facts: RunFacts) -> str:
    spans = [_Span(span=ingested.get("span"),
                   splits=", ".join(f"{name} {count}" for name, count in ingested.get("per_split", {}).items()),
                   rows=[(name, _count(c.get("train")), _count(c.get("eval")), c.get("skipped", 0))
                         for name, c in ingested.get("per_class", {}).items()],
                   moved=ingested.get("rebalanced", []))
             for ingested in facts.ingestion]
    classes = [(c.name, _count(c.train), _count(c.eval)) for c in facts.summary.classes]
    return _macros().data_section(facts.summary, classes, spans)


def skipped_section(facts: RunFacts) -> str:
    return _macros().skipped_section([(s.get("file", ""), s.get("reason", "")) for s in facts.summary.skipped])


def training_section(facts: RunFacts) -> str:
    stages = facts.history.get("stages", {})
    chosen = facts.history.get("chosen_stage", "")
    rows = [(name, stage.get("train_examples", ""), stage.get("validation_examples", "") or "",
             _number(stage.get("validation_loss")), _number(stage.get("validation_accuracy")),
             len(stage.get("unfrozen_variables", [])), stage.get("outcome", ""), "kept" if name == chosen else "")
            for name, stage in stages.items()]
    head = facts.history.get("stage1_head", {})
    candidates = [("+".join(c["levels"]), f"{c['c']:.3g}", _significant(c.get("temperature")),
                   _number(c["cv_log_loss"]), _number(c["cv_accuracy"]))
                  for c in head.get("candidates", [])]
    curves = [(name, stage_curves_png(name, stage["history"])) for name, stage in stages.items()
              if stage.get("history")]
    return _macros().training_section(rows, head.get("folds", "k"), candidates, curves)


def evaluation_section(facts: RunFacts) -> str:
    evaluation = facts.evaluation
    if evaluation is None:
        return _macros().evaluation_section(None, None, None)
    metrics = [(name, _metric(name, value)) for name, value in sorted(evaluation.metrics.items())]
    trained = {c.name: c.train for c in facts.summary.classes}
    per_class = [(c.name, _count(trained.get(c.name)), c.support, c.predicted, _number(c.precision),
                  _number(c.recall)) for c in eval_results.per_class_metrics(evaluation.confusion, facts.class_names)]
    return _macros().evaluation_section(metrics, confusion_matrix_png(evaluation.confusion, facts.class_names),
                                        per_class)


def baseline_section(facts: RunFacts) -> str:
    evaluation = facts.evaluation
    rows = None  # no comparison
    if evaluation is not None and evaluation.has_baseline:
        rows = [(name, _metric(name, value), _metric(name, evaluation.baseline_metrics.get(name)),
                 f"{evaluation.diffs[name]:+.4f}" if name in evaluation.diffs else "n/a")
                for name, value in sorted(evaluation.metrics.items())]
    return _macros().baseline_section(facts.summary.baseline_skipped_reason, facts.skipped_baseline_model,
                                      facts.baseline_model, rows)


def blessing_reasons(facts: RunFacts) -> List[str]:
    evaluation, config = facts.evaluation, facts.config
    if evaluation is None:
        return ["The model was not evaluated."]
    not_evaluated = [f"Not checked: {warning}" for warning in facts.summary.coverage_warnings()]
    if not evaluation.validation_ok:
        return (evaluation.failures or ["TFMA's validation failed without naming a threshold; see the Evaluator "
                                        "log."]) + not_evaluated
    # pipeline.eval_config gates the overall slice only: no class's own accuracy was checked.
    reasons = [f"Accuracy {_number(evaluation.metrics.get(eval_results.ACCURACY), 4)} on the whole eval split "
               f"reached the threshold {config.accuracy_threshold:.4f}. The thresholds apply to the overall "
               "accuracy only, not to each class: see the per-class precision and recall."]
    if evaluation.has_baseline:
        change = evaluation.diffs.get(eval_results.ACCURACY, 0.0)
        reasons.append(f"Accuracy changed by {change:+.4f} against the baseline; a drop of at most "
                       f"{config.max_accuracy_drop:.4f} is allowed.")
    elif facts.summary.baseline_skipped_reason:
        reasons.append(f"Not compared with the latest blessed model ({facts.summary.baseline_skipped_reason}), so "
                       "the change threshold did not apply.")
    else:
        reasons.append("No baseline yet, so the change threshold did not apply.")
    return reasons + not_evaluated


def blessing_section(facts: RunFacts) -> str:
    return _macros().blessing_section(facts.summary.blessed, blessing_reasons(facts), facts.summary.serving_outcome())


def module_section(facts: RunFacts) -> str:
    rows = [("handle", facts.module_handle), ("sha256", facts.module_sha256), ("imported from", facts.module_uri)]
    return _macros().module_section(rows)


def misclassified_section(facts: RunFacts) -> str:
    confusion = facts.evaluation.confusion if facts.evaluation is not None else None
    total = int(confusion.sum() - np.trace(confusion)) if confusion is not None else 0
    scored = _scoring_batches(MAX_SCORED) * _SCORING_BATCH
    return _macros().misclassified_section(facts.misclassified, total, facts.evaluation is not None, scored)


def timing_png(run_timing: timing.RunTiming) -> bytes:
    """Horizontal bars per component, in run order: wall seconds and, where measured, CPU seconds."""
    components = run_timing.components
    figure = Figure(figsize=(8, 0.35 * len(components) + 1.2))
    axis = figure.subplots()
    rows = np.arange(len(components))
    measured = any(c.cpu_seconds is not None for c in components)
    height = 0.4 if measured else 0.8
    axis.barh(rows - (height / 2 if measured else 0), [c.wall_seconds for c in components], height, label="wall")
    if measured:
        axis.barh(rows + height / 2, [c.cpu_seconds or 0.0 for c in components], height, label="CPU")
        axis.legend()
    axis.set_yticks(rows, [_plain(c.component) for c in components])
    axis.invert_yaxis()
    axis.set_xlabel("seconds")
    axis.grid(axis="x", alpha=0.3)
    return _png(figure)


def timing_section(facts: RunFacts) -> str:
    run_timing = facts.summary.timing
    total = run_timing.wall_seconds or 1.0
    rows = [(c.component, c.status, f"{c.wall_seconds:.1f}", f"{100 * c.wall_seconds / total:.0f}%",
             "" if c.cpu_seconds is None else f"{c.cpu_seconds:.1f}",
             "" if c.cores_busy is None else f"{c.cores_busy:.2f}",
             "" if c.peak_rss_bytes is None else f"{c.peak_rss_bytes / 1e9:.2f}")
            for c in run_timing.components]
    png = timing_png(run_timing) if run_timing.components else None
    return _macros().timing_section(run_timing, rows, png)


SECTIONS = (data_section, skipped_section, training_section, evaluation_section, baseline_section,
            blessing_section, module_section, misclassified_section, timing_section)


def render(facts: RunFacts, generated: datetime.datetime) -> str:
    return str(_macros().page(
        f"hubtfx run report: {facts.config.pipeline_name}", generated.strftime("%Y-%m-%d %H:%M:%S"),
        facts.summary.blessed, facts.summary.coverage_warnings(), [section(facts) for section in SECTIONS]))


def reports_folder(config: PipelineConfig) -> str:
    return os.path.join(config.output_dir, REPORTS_DIR)


def run_stem(generated: datetime.datetime) -> str:
    """The file name, without extension, of a run's report and timing JSON."""
    return f"run-{generated.strftime('%Y%m%d-%H%M%S')}"


def write_report(config: PipelineConfig, module: ResolvedModule, connection_config,
                 run_timing: Optional[timing.RunTiming] = None,
                 generated: Optional[datetime.datetime] = None) -> str:
    """Writes <output_dir>/reports/run-<timestamp>.html (and a copy as latest.html) for the latest run of `config`
    with the backbone `module`; returns its path. run_timing: the run's measured timing (ML Metadata's when None)."""
    generated = generated or datetime.datetime.now()
    facts = collect(config, module, connection_config)
    if run_timing is not None:
        facts.summary.timing = run_timing
    page = render(facts, generated)
    folder = reports_folder(config)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, run_stem(generated) + ".html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    shutil.copyfile(path, os.path.join(folder, LATEST_REPORT))
    return path
