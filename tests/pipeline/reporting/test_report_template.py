"""The report's Jinja2 template escapes what comes from the data (no run: facts made up here)."""
import datetime
import html.parser
import io

import numpy as np
from PIL import Image

from hubtfx.components.gate.coverage import ClassCoverage
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.components.modality.image import ImageModality
from hubtfx.pipeline.reporting import eval_results, report
from hubtfx.pipeline.reporting.run_summary import RunSummary

HOSTILE_CLASS = '<script>alert("class")</script>'


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.attributes = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [value for _, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


def _facts_with_a_hostile_class_name():
    classes = [ClassCoverage("circle", 4, 2), ClassCoverage(HOSTILE_CLASS, 3, 0)]
    summary = RunSummary(data_root="/data", files_seen=9, examples_written=9, module="tiny", module_sha256="ab" * 32,
                         eval_accuracy=0.5, blessed=False, accuracy_threshold=0.5, classes=classes)
    evaluation = eval_results.EvalResults(
        metrics={eval_results.ACCURACY: 0.5}, baseline_metrics={}, diffs={}, confusion=np.array([[1, 1], [0, 0]]),
        validation_ok=True, failures=[])
    ingestion = [{"span": None, "per_split": {"train": 7, "eval": 2}, "per_class": {
        c.name: {"train": c.train, "eval": c.eval, "skipped": 0} for c in classes}}]
    wrong = report.Misclassified(filename="circle/1.png", label_name="circle", predicted_name=HOSTILE_CLASS,
                                 probability=0.6,
                                 example_html=ImageModality().render_example(_png(), "Misclassified: circle/1.png"))
    return report.RunFacts(config=PipelineConfig(), summary=summary, ingestion=ingestion, history={},
                           class_names=[c.name for c in classes], evaluation=evaluation, baseline_model="",
                           skipped_baseline_model="", module_handle="tiny", module_sha256="ab" * 32, module_uri="/m",
                           misclassified=[wrong])


def test_a_class_name_with_a_script_tag_is_shown_as_text_everywhere():
    page = report.render(_facts_with_a_hostile_class_name(), datetime.datetime(2026, 11, 29, 12, 0))
    parsed = _Page()
    parsed.feed(page)
    assert "script" not in parsed.tags and "<script" not in page.lower()
    assert "&lt;script&gt;alert(" in page
    text = "".join(parsed.text)
    # Data table, per-class table, coverage warning and the misclassified image's caption all name the class.
    assert text.count(HOSTILE_CLASS) >= 4
    assert f"predicted {HOSTILE_CLASS}" in text and f"class '{HOSTILE_CLASS}' has no eval examples" in text


def test_the_template_ships_beside_the_module_and_sections_render_alone():
    facts = _facts_with_a_hostile_class_name()
    assert report._macros()  # pylint: disable=protected-access  (loads report.html.j2 from the package)
    assert report.module_section(facts).startswith('<section id="module">')
    assert "NOT BLESSED" in report.blessing_section(facts)
